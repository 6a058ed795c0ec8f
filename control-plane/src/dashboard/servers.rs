//! Database servers: each with its status, limits, tenants and how it answers now;
//! drain, disable or activate one; owners add one.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use owner::servers::ServerStatus;
use secrecy::SecretString;
use serde::Deserialize;

use super::overview::NoticeQuery;
use super::page::{Chrome, DashForm, DashResult, DashSession, client_mistake, render, see_other};
use super::view::{bytes, notice_text};
use crate::http::extract::ClientIp;
use crate::http::state::AppState;
use crate::provisioning::AddServer;
use crate::{Error, Result};

pub struct ServerRow {
    pub id: String,
    pub status: &'static str,
    pub address: String,
    pub tenants: String,
    pub databases: String,
    pub connections: String,
    pub budget: String,
    pub disk: String,
    pub reachable: bool,
    pub version: String,
    pub has_tenants: bool,
}

#[derive(Template)]
#[template(path = "servers.html")]
pub struct ServersPage {
    pub chrome: Chrome,
    pub servers: Vec<ServerRow>,
    pub error: Option<String>,
    /// The name typed in the add form, shown back after a mistake (never the URL).
    pub name: String,
}

async fn servers_page(
    state: &AppState,
    session: &DashSession,
    notice: Option<String>,
    error: Option<(axum::http::StatusCode, String)>,
    name: String,
) -> DashResult<Response> {
    let servers = state
        .servers
        .report()
        .await?
        .into_iter()
        .map(|r| {
            let s = &r.load.server;
            let live = r.live.as_ref();
            ServerRow {
                id: s.id.clone(),
                status: s.status.as_str(),
                address: format!("{}:{}", s.host, s.port),
                tenants: match s.max_tenants {
                    Some(max) => format!("{} of {max}", r.load.tenants),
                    None => r.load.tenants.to_string(),
                },
                databases: live.map_or("–".into(), |l| l.databases.to_string()),
                connections: live.map_or("–".into(), |l| {
                    format!("{} of {}", l.connections, l.max_connections)
                }),
                budget: s
                    .connection_budget
                    .map_or_else(|| "auto".into(), |n| n.to_string()),
                disk: live.map_or("–".into(), |l| bytes(Some(l.database_bytes))),
                reachable: r.reachable,
                version: live.map_or("–".into(), |l| l.version.clone()),
                has_tenants: r.load.tenants > 0,
            }
        })
        .collect();
    let mut chrome = session.chrome(state, "servers");
    chrome.notice = notice;
    let status = error.as_ref().map(|(s, _)| *s);
    let mut response = render(&ServersPage {
        chrome,
        servers,
        error: error.map(|(_, m)| m),
        name,
    });
    if let Some(status) = status {
        *response.status_mut() = status;
    }
    Ok(response)
}

/// After an action: back to the list with `notice`, or the list with the client's
/// mistake (and the name typed, for the add form).
async fn answer(
    state: &AppState,
    session: &DashSession,
    result: Result<()>,
    notice: &str,
    name: String,
) -> DashResult<Response> {
    match result {
        Ok(()) => Ok(see_other("/owner/servers", notice)),
        Err(e) => {
            let api = client_mistake(e)?;
            servers_page(state, session, None, Some((api.status, api.message)), name).await
        }
    }
}

pub async fn list(
    State(state): State<AppState>,
    session: DashSession,
    Query(query): Query<NoticeQuery>,
) -> DashResult<Response> {
    servers_page(
        &state,
        &session,
        notice_text(query.notice.as_deref()),
        None,
        String::new(),
    )
    .await
}

#[derive(Deserialize, Default)]
pub struct AddForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    max_tenants: String,
}

fn optional_count(text: &str, what: &str) -> Result<Option<i32>> {
    match text.trim() {
        "" => Ok(None),
        t => t
            .parse::<i32>()
            .ok()
            .filter(|n| *n >= 1)
            .map(Some)
            .ok_or_else(|| {
                Error::BadRequest(format!("{what}: a whole number of at least 1, or empty"))
            }),
    }
}

/// Owners only: a server's admin URL reaches every tenant on it.
pub async fn add(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    DashForm { session, form }: DashForm<AddForm>,
) -> DashResult<Response> {
    if session.0.operator.role != owner::operators::OperatorRole::Owner {
        return Err(Error::Forbidden.into());
    }
    let result = async {
        let max_tenants = optional_count(&form.max_tenants, "max tenants")?;
        state
            .servers
            .add(
                AddServer {
                    id: form.name.trim().to_string(),
                    url: SecretString::from(form.url.trim().to_string()),
                    max_tenants,
                    connection_budget: None,
                    server_group: None,
                },
                &session.actor(ip),
            )
            .await
    }
    .await;
    answer(
        &state,
        &session,
        result.map(|_| ()),
        "server_added",
        form.name,
    )
    .await
}

/// Drains a server: no new tenants, and its tenants moved off in the background.
pub async fn drain(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    DashForm { session, form: _ }: DashForm<StatusForm>,
) -> DashResult<Response> {
    session.require_write()?;
    let result = crate::backups::start_drain(
        &state.servers,
        &state.backups,
        &state.tasks,
        &id,
        &session.actor(ip),
    )
    .await;
    answer(&state, &session, result, "server_draining", String::new()).await
}

#[derive(Deserialize, Default)]
pub struct StatusForm {
    #[serde(default)]
    status: String,
}

pub async fn set_status(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    DashForm { session, form }: DashForm<StatusForm>,
) -> DashResult<Response> {
    session.require_write()?;
    let result = match ServerStatus::parse(&form.status) {
        Some(status) => {
            state
                .servers
                .update(
                    &id,
                    &owner::servers::ServerChange {
                        status: Some(status),
                        ..Default::default()
                    },
                    &session.actor(ip),
                )
                .await
        }
        None => Err(Error::BadRequest(format!(
            "status: active, draining or disabled, not {:?}",
            form.status
        ))),
    };
    answer(
        &state,
        &session,
        result.map(|_| ()),
        "server_saved",
        String::new(),
    )
    .await
}
