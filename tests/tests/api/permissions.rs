//! Roles as sets of permissions: every route of the tenant API checks its permission
//! (table-driven: each route is asked by a role lacking just that permission, then by a
//! role holding only it), custom roles, and what the built-in ones allow.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TENANT_ADMIN_PASSWORD, TestApp, spawn_app};

const SLUG: &str = "perm";

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let response = app
        .on(
            method,
            &format!("{SLUG}.localhost"),
            path,
            Some(token),
            body.as_ref(),
        )
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn upload(app: &TestApp, token: &str) -> u16 {
    app.http
        .post(format!("{}/api/v1/files/uploads?name=a.txt", app.address))
        .header("host", format!("{SLUG}.localhost"))
        .header("content-type", "text/plain")
        .bearer_auth(token)
        .body("hello")
        .send()
        .await
        .expect("upload")
        .status()
        .as_u16()
}

/// Every route that needs a permission, with it. Ids are random: a request allowed in
/// gets a 404 or a validation error, never a 403.
fn routes() -> Vec<(Method, String, &'static str, Option<Value>)> {
    let id = uuid::Uuid::new_v4();
    let mut routes = vec![
        (
            Method::GET,
            "/api/v1/status".to_string(),
            "status:details",
            None,
        ),
        (Method::GET, "/api/v1/users".into(), "users:manage", None),
        (
            Method::POST,
            "/api/v1/users".into(),
            "users:manage",
            Some(json!({ "email": "x", "role": "staff", "password": "p" })),
        ),
        (
            Method::GET,
            format!("/api/v1/users/{id}"),
            "users:manage",
            None,
        ),
        (
            Method::PATCH,
            format!("/api/v1/users/{id}"),
            "users:manage",
            Some(json!({ "name": "n" })),
        ),
        (
            Method::DELETE,
            format!("/api/v1/users/{id}"),
            "users:manage",
            None,
        ),
        (Method::GET, "/api/v1/roles".into(), "users:manage", None),
        (
            Method::GET,
            "/api/v1/roles/staff".into(),
            "users:manage",
            None,
        ),
        (
            Method::POST,
            "/api/v1/roles".into(),
            "roles:manage",
            Some(json!({ "name": "Bad Name", "permissions": [] })),
        ),
        (
            Method::PATCH,
            "/api/v1/roles/no-such-role".into(),
            "roles:manage",
            Some(json!({ "description": "d" })),
        ),
        (
            Method::DELETE,
            "/api/v1/roles/no-such-role".into(),
            "roles:manage",
            None,
        ),
        (Method::GET, "/api/v1/files".into(), "files:read", None),
        (
            Method::GET,
            format!("/api/v1/files/id/{id}"),
            "files:read",
            None,
        ),
        (
            Method::DELETE,
            format!("/api/v1/files/id/{id}"),
            "files:write",
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/practices/{id}/members"),
            "members:read",
            None,
        ),
        (
            Method::PUT,
            format!("/api/v1/practices/{id}/members/{id}"),
            "members:manage",
            Some(json!({ "role": "vet" })),
        ),
        (
            Method::DELETE,
            format!("/api/v1/practices/{id}/members/{id}"),
            "members:manage",
            None,
        ),
    ];
    routes.push((
        Method::GET,
        "/api/v1/integrations/providers".into(),
        "integrations:read",
        None,
    ));
    routes.push((
        Method::GET,
        "/api/v1/integrations".into(),
        "integrations:read",
        None,
    ));
    routes.push((
        Method::POST,
        "/api/v1/integrations".into(),
        "integrations:manage",
        Some(json!({ "provider": "nope", "name": "x", "credentials": {} })),
    ));
    routes.push((
        Method::GET,
        format!("/api/v1/integrations/{id}"),
        "integrations:read",
        None,
    ));
    routes.push((
        Method::PATCH,
        format!("/api/v1/integrations/{id}"),
        "integrations:manage",
        Some(json!({ "name": "n" })),
    ));
    routes.push((
        Method::DELETE,
        format!("/api/v1/integrations/{id}"),
        "integrations:manage",
        None,
    ));
    routes.push((
        Method::POST,
        format!("/api/v1/integrations/{id}/test"),
        "integrations:manage",
        None,
    ));
    routes.push((
        Method::POST,
        format!("/api/v1/integrations/{id}/sync"),
        "integrations:manage",
        None,
    ));
    routes.push((
        Method::GET,
        format!("/api/v1/integrations/{id}/calls"),
        "integrations:read",
        None,
    ));
    for (table, read, write) in [
        ("practices", "practices:read", "practices:write"),
        ("patients", "patients:read", "patients:write"),
        ("appointments", "appointments:read", "appointments:write"),
        (
            "medical_records",
            "medical_records:read",
            "medical_records:write",
        ),
        ("prescriptions", "prescriptions:read", "prescriptions:write"),
        ("inventory", "inventory:read", "inventory:write"),
    ] {
        routes.push((Method::GET, format!("/api/v1/{table}"), read, None));
        routes.push((Method::GET, format!("/api/v1/{table}/{id}"), read, None));
        routes.push((
            Method::POST,
            format!("/api/v1/{table}"),
            write,
            Some(json!({})),
        ));
        routes.push((
            Method::PATCH,
            format!("/api/v1/{table}/{id}"),
            write,
            Some(json!({})),
        ));
        routes.push((Method::DELETE, format!("/api/v1/{table}/{id}"), write, None));
    }
    routes
}

/// Sets the probe role's permissions (as the tenant's admin).
async fn probe_may(app: &TestApp, admin: &str, permissions: Vec<&str>) {
    let (status, body) = call(
        app,
        Method::PATCH,
        "/api/v1/roles/probe",
        admin,
        Some(json!({ "permissions": permissions })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn every_route_checks_its_own_permission() {
    let app = spawn_app().await;
    let (_, admin) = app.tenant_with_admin(SLUG, "pro").await;
    let (status, listed) = call(&app, Method::GET, "/api/v1/roles", &admin, None).await;
    assert_eq!(status, 200, "{listed}");
    let all: Vec<String> = serde_json::from_value(listed["permissions"].clone()).expect("list");
    assert_eq!(all, tenant::permissions::ALL);
    let admin_role = listed["roles"]
        .as_array()
        .and_then(|roles| roles.iter().find(|r| r["name"] == "admin"))
        .expect("admin role");
    assert_eq!(
        admin_role["permissions"].as_array().map(Vec::len),
        Some(all.len()),
        "admin holds every permission"
    );

    let (status, body) = call(
        &app,
        Method::POST,
        "/api/v1/roles",
        &admin,
        Some(json!({ "name": "probe", "permissions": [] })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(
        &app,
        Method::POST,
        "/api/v1/users",
        &admin,
        Some(json!({ "email": "probe@perm.example", "role": "probe", "password": "probe-password-1" })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let probe = app
        .tenant_login(SLUG, "probe@perm.example", "probe-password-1")
        .await;

    let mut covered = std::collections::BTreeSet::new();
    for (method, path, permission, body) in routes() {
        covered.insert(permission);
        // Everything but this permission: refused, naming it.
        probe_may(
            &app,
            &admin,
            all.iter()
                .map(String::as_str)
                .filter(|p| *p != permission)
                .collect(),
        )
        .await;
        let (status, answer) = call(&app, method.clone(), &path, &probe, body.clone()).await;
        assert_eq!(
            status, 403,
            "{method} {path} without {permission}: {answer}"
        );
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(permission)),
            "{method} {path}: {answer}"
        );
        // This permission alone: let in (whatever the request itself then gets).
        probe_may(&app, &admin, vec![permission]).await;
        let (status, answer) = call(&app, method.clone(), &path, &probe, body).await;
        assert_ne!(
            status, 403,
            "{method} {path} with only {permission}: {answer}"
        );
        assert_ne!(status, 401, "{method} {path}: {answer}");
    }
    // The upload route takes a raw body.
    probe_may(
        &app,
        &admin,
        all.iter()
            .map(String::as_str)
            .filter(|p| *p != "files:write")
            .collect(),
    )
    .await;
    assert_eq!(upload(&app, &probe).await, 403);
    probe_may(&app, &admin, vec!["files:write"]).await;
    assert_eq!(upload(&app, &probe).await, 201);
    covered.insert("files:write");
    assert_eq!(
        covered.len(),
        all.len(),
        "every permission guards a route: {covered:?}"
    );
}

#[tokio::test]
async fn custom_roles_are_managed_and_built_in_ones_are_fixed() {
    let app = spawn_app().await;
    let (_, admin) = app.tenant_with_admin(SLUG, "pro").await;
    for (body, code) in [
        (
            json!({ "name": "Front Desk", "permissions": [] }),
            "invalid_role",
        ),
        (
            json!({ "name": "front-desk", "permissions": ["patients:fly"] }),
            "unknown_permission",
        ),
        (json!({ "name": "front-desk" }), "invalid_body"),
    ] {
        let (status, answer) = call(&app, Method::POST, "/api/v1/roles", &admin, Some(body)).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (422, Some(code)),
            "{answer}"
        );
    }
    let (status, role) = call(
        &app,
        Method::POST,
        "/api/v1/roles",
        &admin,
        Some(json!({ "name": "front-desk", "description": "Reception",
                     "permissions": ["appointments:write", "appointments:read", "patients:read", "patients:read"] })),
    )
    .await;
    assert_eq!(status, 201, "{role}");
    assert_eq!(
        role["permissions"],
        json!(["appointments:read", "appointments:write", "patients:read"]),
        "sorted, without repeats"
    );
    let (status, _) = call(
        &app,
        Method::POST,
        "/api/v1/roles",
        &admin,
        Some(json!({ "name": "front-desk", "permissions": [] })),
    )
    .await;
    assert_eq!(status, 409);
    for name in ["admin", "staff", "viewer"] {
        let (status, answer) = call(
            &app,
            Method::PATCH,
            &format!("/api/v1/roles/{name}"),
            &admin,
            Some(json!({ "permissions": [] })),
        )
        .await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (409, Some("built_in_role"))
        );
        let (status, _) = call(
            &app,
            Method::DELETE,
            &format!("/api/v1/roles/{name}"),
            &admin,
            None,
        )
        .await;
        assert_eq!(status, 409);
    }

    // A user on the custom role can do what it grants, and nothing else.
    let (status, body) = call(
        &app,
        Method::POST,
        "/api/v1/users",
        &admin,
        Some(json!({ "email": "desk@perm.example", "role": "front-desk", "password": "desk-password-1" })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(
        &app,
        Method::POST,
        "/api/v1/users",
        &admin,
        Some(json!({ "email": "ghost@perm.example", "role": "ghost", "password": "ghost-password-1" })),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_role"))
    );
    let desk = app
        .tenant_login(SLUG, "desk@perm.example", "desk-password-1")
        .await;
    let (status, me) = call(&app, Method::GET, "/api/v1/me", &desk, None).await;
    assert_eq!(status, 200);
    assert_eq!(me["permissions"], role["permissions"]);
    assert_eq!(
        call(&app, Method::GET, "/api/v1/patients", &desk, None)
            .await
            .0,
        200
    );
    assert_eq!(
        call(&app, Method::GET, "/api/v1/practices", &desk, None)
            .await
            .0,
        403
    );

    // A role in use stays; taking a permission away applies from the next request.
    let (status, answer) = call(
        &app,
        Method::DELETE,
        "/api/v1/roles/front-desk",
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("role_in_use"))
    );
    let (status, _) = call(
        &app,
        Method::PATCH,
        "/api/v1/roles/front-desk",
        &admin,
        Some(json!({ "permissions": ["appointments:read"] })),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        call(&app, Method::GET, "/api/v1/patients", &desk, None)
            .await
            .0,
        403
    );

    // Built-in roles keep what they always allowed.
    let (status, _) = call(
        &app,
        Method::POST,
        "/api/v1/users",
        &admin,
        Some(json!({ "email": "look@perm.example", "role": "viewer", "password": TENANT_ADMIN_PASSWORD })),
    )
    .await;
    assert_eq!(status, 201);
    let viewer = app
        .tenant_login(SLUG, "look@perm.example", TENANT_ADMIN_PASSWORD)
        .await;
    assert_eq!(
        call(&app, Method::GET, "/api/v1/patients", &viewer, None)
            .await
            .0,
        200
    );
    assert_eq!(
        call(
            &app,
            Method::POST,
            "/api/v1/practices",
            &viewer,
            Some(json!({ "name": "x" }))
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(&app, Method::GET, "/api/v1/roles", &viewer, None)
            .await
            .0,
        403
    );
    let audited = crate::helpers::pg(&tenant_db(&app).await)
        .await
        .query_one(
            "SELECT count(*) FROM audit_log WHERE action LIKE 'role.%'",
            &[],
        )
        .await
        .expect("audit")
        .get::<_, i64>(0);
    assert_eq!(audited, 2, "the creation and the change");
}

async fn tenant_db(app: &TestApp) -> String {
    app.owner_client()
        .await
        .query_one(
            "SELECT db_name FROM tenants WHERE slug = $1 AND status <> 'deleted'",
            &[&SLUG],
        )
        .await
        .expect("tenant")
        .get(0)
}

/// Turns the tenant's database back into what tenant migration V1 made: no `roles`, the
/// old CHECK on `users.role`, integrations as V1 had them (a tenant a fleet migration has
/// not reached yet).
async fn back_to_v1(app: &TestApp) {
    crate::helpers::pg(&tenant_db(app).await)
        .await
        .batch_execute(
            "DROP TABLE integration_calls; \
             ALTER TABLE integrations ADD COLUMN enabled boolean NOT NULL DEFAULT true, \
                 DROP COLUMN status, DROP COLUMN credentials_hint, DROP COLUMN last_checked_at, \
                 DROP COLUMN last_sync_at, DROP COLUMN last_error; \
             ALTER TABLE users DROP CONSTRAINT users_role_fkey; \
             ALTER TABLE users ADD CONSTRAINT users_role_check CHECK (role IN ('admin', 'staff', 'viewer')); \
             DROP TABLE roles; \
             DELETE FROM refinery_schema_history WHERE version > 1;",
        )
        .await
        .expect("back to V1");
    app.owner_client()
        .await
        .execute(
            "UPDATE tenants SET schema_version = 1 WHERE slug = $1 AND status <> 'deleted'",
            &[&SLUG],
        )
        .await
        .expect("version");
    // Its cached row (and schema version) is read again.
    app.state.gateway.forget(None).await;
}

#[tokio::test]
async fn a_tenant_not_yet_migrated_keeps_its_built_in_roles_until_the_fleet_run() {
    let app = spawn_app().await;
    let (_, admin) = app.tenant_with_admin(SLUG, "pro").await;
    let (status, _) = call(
        &app,
        Method::POST,
        "/api/v1/users",
        &admin,
        Some(json!({ "email": "look@perm.example", "role": "viewer", "password": TENANT_ADMIN_PASSWORD })),
    )
    .await;
    assert_eq!(status, 201);
    back_to_v1(&app).await;

    // Signed-in users keep their built-in role's permissions.
    let (status, users) = call(&app, Method::GET, "/api/v1/users", &admin, None).await;
    assert_eq!(status, 200, "{users}");
    let viewer = app
        .tenant_login(SLUG, "look@perm.example", TENANT_ADMIN_PASSWORD)
        .await;
    assert_eq!(
        call(&app, Method::GET, "/api/v1/patients", &viewer, None)
            .await
            .0,
        200
    );
    assert_eq!(
        call(
            &app,
            Method::POST,
            "/api/v1/practices",
            &viewer,
            Some(json!({ "name": "x" }))
        )
        .await
        .0,
        403
    );
    let (status, answer) = call(
        &app,
        Method::POST,
        "/api/v1/roles",
        &admin,
        Some(json!({ "name": "desk", "permissions": [] })),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("schema_behind"))
    );
    let (status, answer) = call(
        &app,
        Method::POST,
        "/api/v1/users",
        &admin,
        Some(
            json!({ "email": "d@perm.example", "role": "desk", "password": TENANT_ADMIN_PASSWORD }),
        ),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (422, Some("invalid_role"))
    );

    // The fleet run brings it to V2: custom roles work.
    let summary = control_plane::fleet::FleetRun::start(
        app.services.fleet.clone(),
        control_plane::fleet::FleetOptions::default(),
        "test",
    )
    .await
    .expect("start")
    .execute(|_| {})
    .await
    .expect("run");
    assert_eq!((summary.succeeded, summary.failed), (1, 0), "{summary:?}");
    app.state.gateway.forget(None).await;
    let (status, body) = call(
        &app,
        Method::POST,
        "/api/v1/roles",
        &admin,
        Some(json!({ "name": "desk", "permissions": ["patients:read"] })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        call(&app, Method::GET, "/api/v1/users", &admin, None)
            .await
            .0,
        200
    );
}
