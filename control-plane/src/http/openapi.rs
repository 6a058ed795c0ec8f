//! `GET /api/owner/openapi.json`: the owner API described as OpenAPI 3.1.
//!
//! The document is built from the table below. A test checks it against the routers in
//! `http/owner_*.rs` in both directions (every documented operation answers, every
//! routed operation is documented), so the two cannot drift apart unnoticed.

use axum::Json;
use serde_json::{Map, Value, json};

/// One operation: method, path (under `/api/owner`), tag, summary, request body schema,
/// and its success status with a description.
struct Op {
    method: &'static str,
    path: &'static str,
    tag: &'static str,
    summary: &'static str,
    body: Option<&'static str>,
    ok: (&'static str, &'static str),
    write: bool,
}

const fn op(
    method: &'static str,
    path: &'static str,
    tag: &'static str,
    summary: &'static str,
    body: Option<&'static str>,
    ok: (&'static str, &'static str),
    write: bool,
) -> Op {
    Op {
        method,
        path,
        tag,
        summary,
        body,
        ok,
        write,
    }
}

const OK: (&str, &str) = ("200", "OK");

const OPERATIONS: &[Op] = &[
    op(
        "post",
        "/auth/login",
        "auth",
        "Sign in: email and password give a bearer token naming a new session. Failed attempts are throttled (429).",
        Some("LoginRequest"),
        ("200", "A token"),
        false,
    ),
    op(
        "post",
        "/auth/logout",
        "auth",
        "Revoke the session of the token (or cookie) used.",
        None,
        ("204", "Revoked"),
        false,
    ),
    op(
        "get",
        "/me",
        "auth",
        "The operator behind the token.",
        None,
        OK,
        false,
    ),
    op(
        "post",
        "/me/password",
        "auth",
        "Set one's own password (required after a one-time password).",
        Some("PasswordRequest"),
        ("204", "Changed"),
        false,
    ),
    op(
        "get",
        "/tenants",
        "tenants",
        "List tenants (`status`, `include_deleted`, `limit`, `offset`).",
        None,
        OK,
        false,
    ),
    op(
        "post",
        "/tenants",
        "tenants",
        "Create a tenant: 202 at once, or with `?wait=true` 201 once active. `admin_email` makes its first user.",
        Some("CreateTenant"),
        ("202", "Recorded; being provisioned"),
        true,
    ),
    op(
        "get",
        "/tenants/{id}",
        "tenants",
        "One tenant (by id or slug) with its domains and provisioning progress.",
        None,
        OK,
        false,
    ),
    op(
        "delete",
        "/tenants/{id}",
        "tenants",
        "Start deleting a tenant (202), or wait for it with `?wait=true` (200).",
        None,
        ("202", "Deletion started"),
        true,
    ),
    op(
        "post",
        "/tenants/{id}/suspend",
        "tenants",
        "Suspend: its requests are refused (403) from the next one.",
        None,
        OK,
        true,
    ),
    op(
        "post",
        "/tenants/{id}/resume",
        "tenants",
        "Resume a suspended tenant.",
        None,
        OK,
        true,
    ),
    op(
        "put",
        "/tenants/{id}/maintenance",
        "tenants",
        "Put the tenant in maintenance: its requests are answered 503 `tenant_maintenance` with Retry-After (only writes, with `allow_reads`) until it is ended. Again on a tenant in an operator's maintenance: changes its note and reads. 409 `tenant_in_maintenance` while an operation (a restore, a migration) holds it.",
        Some("MaintenanceRequest"),
        OK,
        true,
    ),
    op(
        "delete",
        "/tenants/{id}/maintenance",
        "tenants",
        "End the operator's maintenance (nothing to do if the tenant is in none). 409 `tenant_in_maintenance` while an operation holds it: that one ends with the operation.",
        None,
        OK,
        true,
    ),
    op(
        "get",
        "/tenants/{id}/settings",
        "tenants",
        "The tenant's settings (time zone, locale, branding), its plan's features, operators' overrides and the features it has.",
        None,
        OK,
        false,
    ),
    op(
        "patch",
        "/tenants/{id}/settings",
        "tenants",
        "Change settings: a field given replaces, `null` resets it to the default, a field left out stays. 422 naming the field on a bad value (an unknown time zone, a colour not #rrggbb...). Served to the tenant app at GET /api/v1/settings from the next request.",
        Some("SettingsPatch"),
        OK,
        true,
    ),
    op(
        "get",
        "/tenants/{id}/features",
        "tenants",
        "The same answer as GET /tenants/{id}/settings.",
        None,
        OK,
        false,
    ),
    op(
        "patch",
        "/tenants/{id}/features",
        "tenants",
        "Override the plan's features for this tenant: `true` adds a feature, `false` takes it away (its routes answer 403 `feature_disabled`), `null` leaves it to the plan.",
        Some("FeaturesPatch"),
        OK,
        true,
    ),
    op(
        "get",
        "/tenants/{id}/audit",
        "tenants",
        "The tenant's audit trail.",
        None,
        OK,
        false,
    ),
    op(
        "get",
        "/tenants/{id}/domains",
        "domains",
        "The tenant's domains.",
        None,
        OK,
        false,
    ),
    op(
        "post",
        "/tenants/{id}/domains",
        "domains",
        "Add a domain (unique across the fleet); served from the next request.",
        Some("DomainRequest"),
        ("201", "Added"),
        true,
    ),
    op(
        "delete",
        "/tenants/{id}/domains/{domain}",
        "domains",
        "Remove a domain (not the primary one).",
        None,
        OK,
        true,
    ),
    op(
        "post",
        "/tenants/{id}/domains/{domain}/primary",
        "domains",
        "Make a domain the primary one.",
        None,
        OK,
        true,
    ),
    op(
        "get",
        "/tenants/{id}/subscription",
        "subscriptions",
        "The tenant's subscriptions, current first.",
        None,
        OK,
        false,
    ),
    op(
        "put",
        "/tenants/{id}/subscription",
        "subscriptions",
        "Move the tenant to a plan or set its billing status; limits apply from the next request.",
        Some("SubscriptionRequest"),
        OK,
        true,
    ),
    op(
        "get",
        "/backups",
        "backups",
        "Every tenant's backups, newest first (`?limit`, at most 500).",
        None,
        OK,
        false,
    ),
    op(
        "get",
        "/backups/restore-test",
        "backups",
        "The latest restore test: a recent backup restored into a scratch database, its row counts compared with its manifest.",
        None,
        OK,
        false,
    ),
    op(
        "get",
        "/tenants/{id}/backups",
        "backups",
        "The tenant's backups, newest first, with sizes and durations.",
        None,
        OK,
        false,
    ),
    op(
        "post",
        "/tenants/{id}/backups",
        "backups",
        "Back the tenant up now: 202 with the running backup; `?wait=true` answers 201 with the finished one. 409 `already_running` while another backup or restore of the tenant runs.",
        None,
        ("202", "Started"),
        true,
    ),
    op(
        "get",
        "/tenants/{id}/backups/{backup}",
        "backups",
        "One backup of the tenant (another tenant's is 404).",
        None,
        OK,
        false,
    ),
    op(
        "post",
        "/tenants/{id}/restore",
        "backups",
        "Restore a backup into the tenant (in maintenance meanwhile), or with `into` into a new tenant. The backup is checked against its checksums first: 422 `backup_corrupt` if it was changed. 202 with the restore's id; `?wait=true` answers 200 when done.",
        Some("RestoreRequest"),
        ("202", "Started"),
        true,
    ),
    op(
        "get",
        "/tenants/{id}/restores/{restore}",
        "backups",
        "One restore of the tenant: status, phase, error.",
        None,
        OK,
        false,
    ),
    op(
        "get",
        "/tenants/{id}/export",
        "backups",
        "Everything the tenant owns as one tar archive (database dump, each table as JSON lines, files, manifest), streamed.",
        None,
        ("200", "A tar archive (application/x-tar)"),
        true,
    ),
    op(
        "get",
        "/plans",
        "plans",
        "Subscription plans.",
        None,
        OK,
        false,
    ),
    op(
        "post",
        "/plans",
        "plans",
        "Create a plan.",
        Some("PlanCreate"),
        ("201", "Created"),
        true,
    ),
    op(
        "get",
        "/plans/{code}",
        "plans",
        "One plan.",
        None,
        OK,
        false,
    ),
    op(
        "put",
        "/plans/{code}",
        "plans",
        "Replace a plan's fields (the code stays).",
        Some("PlanFields"),
        OK,
        true,
    ),
    op(
        "post",
        "/tenants/{id}/move",
        "servers",
        "Move the tenant's database to another server: 202 with the move copying (the tenant serves reads meanwhile; writes get 503 `tenant_maintenance`), or with `?wait=true` 200 once it is served from the target. Checked (rows and a checksum per table) before the switch; undone if anything fails. 409 `already_running` (a backup, restore or move of the tenant), 409 `server_not_active`, 400 for an unknown server or the one it is on.",
        Some("MoveRequest"),
        ("202", "Move started"),
        true,
    ),
    op(
        "get",
        "/tenants/{id}/moves",
        "servers",
        "The tenant's moves, newest first: phase (copying, switched, done, failed), servers, write pause, what was verified, error.",
        None,
        OK,
        false,
    ),
    op(
        "get",
        "/servers",
        "servers",
        "The database servers tenants live on: status, limits, tenants, and as each answers now (reachable, version, databases, connections, disk used).",
        None,
        OK,
        false,
    ),
    op(
        "post",
        "/servers",
        "servers",
        "Register a server (owners only). It is checked first (it answers; its role is a superuser or has CREATEROLE and CREATEDB), hardened and given the template database; the URL is stored sealed and never shown. 409 `server_exists`.",
        Some("ServerAdd"),
        ("201", "Added"),
        true,
    ),
    op(
        "post",
        "/servers/{id}/drain",
        "servers",
        "Set the server draining and move every tenant off it in the background, two at a time, each where a new tenant would go (see `POST /tenants/{id}/move`). 202 with the server; its tenant count falls as the moves finish.",
        None,
        ("202", "Draining"),
        true,
    ),
    op(
        "get",
        "/servers/{id}",
        "servers",
        "One server.",
        None,
        OK,
        false,
    ),
    op(
        "patch",
        "/servers/{id}",
        "servers",
        "Change a server's status (`draining`: no new tenants; `disabled`: none, and skipped by fleet-wide passes) or limits (`null` removes one).",
        Some("ServerUpdate"),
        OK,
        true,
    ),
    op(
        "get",
        "/operators",
        "operators",
        "Operators (owners only).",
        None,
        OK,
        false,
    ),
    op(
        "post",
        "/operators",
        "operators",
        "Invite an operator: the answer holds a one-time password, shown once (owners only).",
        Some("InviteRequest"),
        ("201", "Invited"),
        true,
    ),
    op(
        "patch",
        "/operators/{id}",
        "operators",
        "Change an operator's role or status; disabling revokes their sessions (owners only).",
        Some("OperatorChange"),
        OK,
        true,
    ),
    op(
        "get",
        "/audit",
        "audit",
        "The audit log, newest first (`actor`, `action` prefix, `target_type`, `target_id`, `before`, `limit`).",
        None,
        OK,
        false,
    ),
    op(
        "get",
        "/migrations",
        "migrations",
        "Recent fleet migration runs.",
        None,
        OK,
        false,
    ),
    op(
        "post",
        "/migrations",
        "migrations",
        "Start a fleet migration run: 202 with the run; 409 `migration_running` if one runs.",
        Some("MigrationStart"),
        ("202", "Started"),
        true,
    ),
    op(
        "get",
        "/migrations/status",
        "migrations",
        "Where the fleet is: the target version, the migration set (built in plus what runs recorded), tenants per version and those behind; `?verify=true` also asks every tenant database and lists drift.",
        None,
        OK,
        false,
    ),
    op(
        "get",
        "/migrations/{id}",
        "migrations",
        "One run: status, counts by state, per-tenant rows (failures first).",
        None,
        OK,
        false,
    ),
    op(
        "get",
        "/openapi.json",
        "meta",
        "This document.",
        None,
        OK,
        false,
    ),
];

fn schemas() -> Value {
    let string = json!({"type": "string"});
    let int = json!({"type": "integer"});
    let nullable_int = json!({"type": ["integer", "null"]});
    json!({
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": string, "message": string}}}},
        "LoginRequest": {"type": "object", "required": ["email", "password"], "additionalProperties": false,
            "properties": {"email": string, "password": string}},
        "PasswordRequest": {"type": "object", "required": ["current_password", "new_password"], "additionalProperties": false,
            "properties": {"current_password": string, "new_password": {"type": "string", "minLength": 10}}},
        "CreateTenant": {"type": "object", "required": ["slug", "name"], "additionalProperties": false, "properties": {
            "slug": {"type": "string", "pattern": "^[a-z][a-z0-9-]{1,39}$"}, "name": string, "plan": string,
            "domains": {"type": "array", "items": string}, "admin_email": string, "admin_password": string}},
        "DomainRequest": {"type": "object", "required": ["domain"], "additionalProperties": false,
            "properties": {"domain": string, "primary": {"type": "boolean"}}},
        "SubscriptionRequest": {"type": "object", "required": ["plan"], "additionalProperties": false, "properties": {
            "plan": string, "status": {"enum": ["trialing", "active", "past_due", "cancelled"]},
            "trial_days": int}},
        "PlanFields": {"type": "object", "required": ["name", "price_cents"], "properties": {
            "name": string, "max_users": nullable_int, "max_storage_bytes": nullable_int,
            "max_database_bytes": nullable_int, "price_cents": int, "currency": string,
            "features": {"type": "array", "items": string}, "active": {"type": "boolean"},
            "server_group": {"type": ["string", "null"], "description": "new tenants go to the servers of this group (none: to servers without a group)"}}},
        "PlanCreate": {"allOf": [{"$ref": "#/components/schemas/PlanFields"},
            {"type": "object", "required": ["code"], "properties": {"code": {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,31}$"}}}]},
        "InviteRequest": {"type": "object", "required": ["email", "role"], "additionalProperties": false,
            "properties": {"email": string, "role": {"enum": ["owner", "admin", "viewer"]}}},
        "OperatorChange": {"type": "object", "additionalProperties": false,
            "properties": {"role": {"enum": ["owner", "admin", "viewer"]}, "active": {"type": "boolean"}}},
        "MoveRequest": {"type": "object", "required": ["to"], "additionalProperties": false,
            "properties": {"to": {"type": "string", "description": "the server to move to"}}},
        "ServerAdd": {"type": "object", "required": ["name", "url"], "additionalProperties": false, "properties": {
            "name": {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,39}$"},
            "url": {"type": "string", "description": "admin connection URL, e.g. postgres://admin:secret@db2:5432/postgres"},
            "max_tenants": {"type": ["integer", "null"], "minimum": 1},
            "connection_budget": {"type": ["integer", "null"], "minimum": 1},
            "server_group": {"type": ["string", "null"], "pattern": "^[a-z][a-z0-9-]{0,39}$", "description": "only plans pinned to this group place tenants here"}}},
        "ServerUpdate": {"type": "object", "additionalProperties": false, "properties": {
            "status": {"enum": ["active", "draining", "disabled"]},
            "max_tenants": {"type": ["integer", "null"], "minimum": 1},
            "connection_budget": {"type": ["integer", "null"], "minimum": 1},
            "server_group": {"type": ["string", "null"], "pattern": "^[a-z][a-z0-9-]{0,39}$"}}},
        "SettingsPatch": {"type": "object", "additionalProperties": false, "properties": {
            "time_zone": {"type": ["string", "null"], "description": "an IANA name such as Europe/Rome (default UTC)"},
            "locale": {"type": ["string", "null"], "description": "a BCP 47 tag such as it-IT (default en)"},
            "brand_name": {"type": ["string", "null"], "maxLength": 100, "description": "default: the tenant's name"},
            "brand_colour": {"type": ["string", "null"], "pattern": "^#[0-9a-fA-F]{6}$"},
            "logo_file_id": {"type": ["string", "null"], "format": "uuid", "description": "a PNG, JPEG, GIF or WebP file of the tenant's, served publicly at GET /api/v1/settings/logo"}}},
        "FeaturesPatch": {"type": "object", "additionalProperties": {"type": ["boolean", "null"]},
            "propertyNames": {"pattern": "^[a-z0-9_-]{1,40}$"}},
        "MaintenanceRequest": {"type": "object", "additionalProperties": false, "properties": {
            "note": {"type": ["string", "null"], "maxLength": 500, "description": "what operators see on the tenant page"},
            "allow_reads": {"type": "boolean", "description": "keep serving GET and HEAD requests"}}},
        "RestoreRequest": {"type": "object", "required": ["backup_id"], "additionalProperties": false, "properties": {
            "backup_id": {"type": "string", "format": "uuid"},
            "into": {"type": "string", "pattern": "^[a-z][a-z0-9-]{1,39}$", "description": "restore into a new tenant with this slug"}}},
        "MigrationStart": {"type": "object", "required": ["dry_run"], "additionalProperties": false, "properties": {
            "dry_run": {"type": "boolean", "description": "required: false for a real run"}, "concurrency": int,
            "backup": {"type": "boolean", "description": "back each tenant up right before migrating it"},
            "maintenance": {"type": "boolean", "description": "put each tenant in maintenance (503 tenant_maintenance) while it is migrated"},
            "max_failures": {"description": "a count (5) or a ratio (\"5%\", \"0.05\")"},
            "canary": {"description": "a count of tenants, or a list of slugs"},
            "tenants": {"type": "array", "items": string}, "plan": string,
            "statuses": {"type": "array", "items": string}}}
    })
}

fn parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect()
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for op in OPERATIONS {
        let mut responses = Map::new();
        responses.insert(op.ok.0.into(), json!({"description": op.ok.1}));
        let error = json!({"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
        let with = |description: &str| {
            let mut e = error.clone();
            e["description"] = json!(description);
            e
        };
        responses.insert("400".into(), with("Malformed request"));
        if op.path != "/auth/login" && op.path != "/openapi.json" {
            responses.insert("401".into(), with("No valid token or session"));
        }
        if op.write {
            responses.insert("403".into(), with("The operator's role does not allow this, or a cookie session sent no CSRF token"));
            responses.insert("409".into(), with("Conflicts with the current state"));
            responses.insert("422".into(), with("Invalid values"));
        }
        let mut operation = json!({
            "tags": [op.tag],
            "summary": op.summary,
            "operationId": format!("{}{}", op.method, op.path.replace(['/', '{', '}', '.'], "_")),
            "parameters": parameters(op.path),
            "responses": responses,
        });
        if let Some(body) = op.body {
            operation["requestBody"] = json!({"required": true, "content": {"application/json": {
                "schema": {"$ref": format!("#/components/schemas/{body}")}}}});
        }
        if op.path == "/auth/login" || op.path == "/openapi.json" {
            operation["security"] = json!([]);
        }
        paths
            .entry(op.path.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|item| item.insert(op.method.into(), operation));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "control-plane owner API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Operate a database-per-tenant fleet: tenants, domains, plans, subscriptions, backups, operators, audit, fleet migrations. Errors are {\"error\": {\"code\", \"message\"}}.",
        },
        "servers": [{"url": "/api/owner"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "session": {"type": "apiKey", "in": "cookie", "name": "cp_session",
                    "description": "The dashboard's cookie; state-changing requests also need the X-CSRF-Token header."},
            },
        },
    })
}

pub async fn serve() -> Json<Value> {
    Json(document())
}
