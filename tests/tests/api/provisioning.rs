//! Creating and deleting tenants: what must exist afterwards, on the server and on disk.

use serde_json::{Value, json};

use crate::helpers::{connect_as, pg, spawn_app};

#[tokio::test]
async fn create_makes_roles_database_schema_storage_and_audit() {
    let app = spawn_app().await;
    let body = app.create_tenant("acme").await;
    let id = body["id"].as_str().expect("id").to_string();
    let db = body["db_name"].as_str().expect("db").to_string();
    let owner_role = body["owner_role"].as_str().expect("owner role").to_string();
    let runtime_role = body["runtime_role"]
        .as_str()
        .expect("runtime role")
        .to_string();
    assert_eq!(body["schema_version"], tenant::migrations::latest_version());
    assert!(
        db.starts_with(&app.prefix) && db.contains(&id.replace('-', "")),
        "{db}"
    );
    assert!(
        body.get("owner_password_enc").is_none(),
        "secret leaked: {body}"
    );
    let domains: Vec<&str> = body["domains"]
        .as_array()
        .expect("domains")
        .iter()
        .map(|d| d["domain"].as_str().expect("domain"))
        .collect();
    assert_eq!(domains, ["acme.localhost"]);

    let admin = pg("postgres").await;
    let owner_of_db: String = admin
        .query_one(
            "SELECT r.rolname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = $1",
            &[&db],
        )
        .await
        .expect("database exists")
        .get(0);
    assert_eq!(owner_of_db, owner_role);
    let roles: i64 = admin
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname IN ($1, $2) AND rolcanlogin AND NOT rolsuper", &[&owner_role, &runtime_role])
        .await
        .expect("roles")
        .get(0);
    assert_eq!(roles, 2);
    let public_connect: bool = admin
        .query_one(
            "SELECT has_database_privilege('public', $1, 'CONNECT')",
            &[&db],
        )
        .await
        .expect("acl")
        .get(0);
    assert!(!public_connect, "PUBLIC may connect to the tenant database");

    // Every table of the tenant schema is there and owned by the owner role.
    let tenant_db = pg(&db).await;
    let tables = tenant_db
        .query(
            "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
            &[],
        )
        .await
        .expect("tables");
    let names: Vec<String> = tables.iter().map(|r| r.get(0)).collect();
    for expected in [
        "users",
        "sessions",
        "practices",
        "patients",
        "appointments",
        "medical_records",
        "prescriptions",
        "inventory",
        "files",
        "integrations",
        "audit_log",
        "refinery_schema_history",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    for row in &tables {
        let owner: String = row.get(1);
        assert_eq!(
            owner,
            owner_role,
            "table {} owned by {owner}",
            row.get::<_, String>(0)
        );
    }

    for folder in storage::FOLDERS {
        assert!(
            app.storage_root.join("tenants/acme").join(folder).is_dir(),
            "{folder} missing"
        );
    }

    let actions: Vec<String> = app
        .owner_client()
        .await
        .query(
            "SELECT action FROM audit_log WHERE target_id = $1 ORDER BY id",
            &[&id],
        )
        .await
        .expect("audit")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        actions,
        [
            "tenant.create",
            "tenant.step.roles_created",
            "tenant.step.database_created",
            "tenant.step.schema_migrated",
            "tenant.step.storage_created",
            "tenant.step.ready",
        ]
    );
    let shown: Value = app
        .get(&format!("/api/owner/tenants/{id}"), Some(&app.token))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(shown["status"], "active");
    let by_slug: Value = app
        .get("/api/owner/tenants/acme", Some(&app.token))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(by_slug["id"], shown["id"]);
}

#[tokio::test]
async fn create_without_wait_answers_202_and_the_tenant_settles() {
    let app = spawn_app().await;
    let response = app
        .post_json("/api/owner/tenants", Some(&app.token), &json!({ "slug": "later", "name": "Later", "plan": "starter", "domains": ["clinic.example.com"] }))
        .await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "provisioning");
    assert_eq!(body["plan_code"], "starter");
    let id: uuid::Uuid = body["id"].as_str().expect("id").parse().expect("uuid");
    // The background drive and this one serialise on the tenant lock; either way it ends active.
    let tenant = app.provisioner().drive(id).await.expect("drive");
    assert_eq!(tenant.status.as_str(), "active");
    let domains: i64 = app.count("SELECT count(*) FROM tenant_domains WHERE domain IN ('later.localhost', 'clinic.example.com')").await;
    assert_eq!(domains, 2);
}

#[tokio::test]
async fn delete_removes_database_roles_and_files_keeps_the_row_and_frees_the_slug() {
    let app = spawn_app().await;
    let body = app.create_tenant("gone").await;
    let id = body["id"].as_str().expect("id").to_string();
    let db = body["db_name"].as_str().expect("db").to_string();

    let response = app
        .delete(
            &format!("/api/owner/tenants/{id}?wait=true"),
            Some(&app.token),
        )
        .await;
    assert_eq!(response.status(), 200);
    let deleted: Value = response.json().await.expect("json");
    assert_eq!(deleted["status"], "deleted");
    assert!(deleted["deleted_at"].is_string());

    let (dbs, roles) = app.server_objects().await;
    assert!(!dbs.contains(&db), "database still there: {dbs:?}");
    assert!(
        roles.iter().all(|r| !r.contains(&id.replace('-', ""))),
        "roles left: {roles:?}"
    );
    assert!(
        app.tenant_dirs().is_empty(),
        "directories left: {:?}",
        app.tenant_dirs()
    );
    assert_eq!(app.count("SELECT count(*) FROM tenant_domains").await, 0);
    let kept = app
        .count(&format!(
            "SELECT count(*) FROM tenants WHERE id = '{id}' AND status = 'deleted'"
        ))
        .await;
    assert_eq!(kept, 1, "the row is kept for the audit trail");
    let delete_steps = app.count(&format!("SELECT count(*) FROM audit_log WHERE target_id = '{id}' AND (action LIKE 'tenant.step.%dropped' OR action = 'tenant.step.removed')")).await;
    assert_eq!(delete_steps, 3);

    // The slug can be taken again, by a new tenant with a new database.
    let again = app.create_tenant("gone").await;
    assert_ne!(again["id"], body["id"]);
    assert!(
        connect_as("postgres", again["db_name"].as_str().expect("db"))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn twenty_concurrent_creates_of_one_slug_make_exactly_one_tenant() {
    let app = spawn_app().await;
    let requests = (0..20).map(|i| {
        let app = &app;
        async move {
            app.post_json(
                "/api/owner/tenants",
                Some(&app.token),
                &json!({ "slug": "race", "name": format!("Racer {i}") }),
            )
            .await
            .status()
            .as_u16()
        }
    });
    let mut statuses = futures::future::join_all(requests).await;
    statuses.sort();
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        19,
        "{statuses:?}"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM tenants WHERE slug = 'race'")
            .await,
        1
    );
    let id: uuid::Uuid = app
        .owner_client()
        .await
        .query_one("SELECT id FROM tenants WHERE slug = 'race'", &[])
        .await
        .expect("row")
        .get(0);
    app.provisioner().drive(id).await.expect("drive");
    let (dbs, _) = app.server_objects().await;
    assert_eq!(
        dbs.len(),
        2,
        "one tenant database plus the template: {dbs:?}"
    );
}

#[tokio::test]
async fn suspend_and_resume_change_status_with_audit() {
    let app = spawn_app().await;
    let body = app.create_tenant("sleepy").await;
    let id = body["id"].as_str().expect("id");
    let suspended: Value = app
        .post_json(
            &format!("/api/owner/tenants/{id}/suspend"),
            Some(&app.token),
            &json!({}),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(suspended["status"], "suspended");
    let again = app
        .post_json(
            &format!("/api/owner/tenants/{id}/suspend"),
            Some(&app.token),
            &json!({}),
        )
        .await;
    assert_eq!(again.status(), 409, "suspending twice is a state conflict");
    let resumed: Value = app
        .post_json(
            &format!("/api/owner/tenants/{id}/resume"),
            Some(&app.token),
            &json!({}),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(resumed["status"], "active");
    let audited = app
        .count(&format!("SELECT count(*) FROM audit_log WHERE target_id = '{id}' AND action IN ('tenant.suspend', 'tenant.resume') AND actor = 'operator:owner@example.com'"))
        .await;
    assert_eq!(audited, 2);
}
