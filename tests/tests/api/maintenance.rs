//! Maintenance mode: an operator's (owner API, CLI), reads-only maintenance, the one
//! restores and `migrate --maintenance` take, who may end which, and the recovery of
//! maintenance left by a migration run that died.

use control_plane::audit::Actor;
use control_plane::fleet::{FleetOptions, FleetRun};
use control_plane::provisioning::maintenance::{release_for, take_for};
use owner::maintenance::Holder;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, pg, spawn_app, status_on};

async fn put_maintenance(app: &TestApp, slug: &str, body: &Value) -> (u16, Value) {
    let response = app
        .http
        .put(format!(
            "{}/api/owner/tenants/{slug}/maintenance",
            app.address
        ))
        .bearer_auth(&app.token)
        .json(body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn end_maintenance(app: &TestApp, slug: &str) -> (u16, Value) {
    let response = app
        .delete(
            &format!("/api/owner/tenants/{slug}/maintenance"),
            Some(&app.token),
        )
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn maintenance_column(app: &TestApp, slug: &str) -> Option<String> {
    app.owner_client()
        .await
        .query_one(
            "SELECT maintenance FROM tenants WHERE slug = $1 AND status <> 'deleted'",
            &[&slug],
        )
        .await
        .expect("tenant")
        .get(0)
}

#[tokio::test]
async fn an_operators_maintenance_refuses_requests_until_it_is_ended() {
    let app = spawn_app().await;
    let (_tenant, admin) = app.tenant_with_admin("calm", "free").await;
    let create_user = |n: u32| {
        let (app, admin) = (&app, &admin);
        async move {
            let response = app
                .on(
                    Method::POST,
                    "calm.localhost",
                    "/api/v1/users",
                    Some(admin),
                    Some(&json!({
                        "email": format!("user{n}@calm.example"),
                        "role": "staff",
                        "password": "user-password-1",
                    })),
                )
                .await;
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body["error"]["code"].as_str().map(str::to_string))
        }
    };
    assert_eq!(status_on(&app, "calm.localhost").await, (200, None));

    let (status, body) = put_maintenance(&app, "calm", &json!({ "note": " disk swap " })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["maintenance"]["by"], "operator");
    assert_eq!(body["maintenance"]["note"], "disk swap");
    assert_eq!(body["maintenance"]["allow_reads"], false);
    let response = app.get_on("calm.localhost", "/api/v1/status", &[]).await;
    assert_eq!(response.status(), 503);
    assert!(
        response.headers().contains_key("retry-after"),
        "503 with Retry-After"
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "tenant_maintenance");

    // Reads allowed: GET is served, a write is not.
    let (status, body) = put_maintenance(
        &app,
        "calm",
        &json!({ "note": "read-only while we copy", "allow_reads": true }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["maintenance"]["allow_reads"], true);
    let listed = app
        .on(
            Method::GET,
            "calm.localhost",
            "/api/v1/users",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(listed.status(), 200, "reads are served");
    assert_eq!(
        create_user(1).await,
        (503, Some("tenant_maintenance".into())),
        "writes are not"
    );

    let (status, body) = end_maintenance(&app, "calm").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["maintenance"], Value::Null);
    assert_eq!(create_user(2).await, (201, None), "served again");
    assert_eq!(
        end_maintenance(&app, "calm").await.0,
        200,
        "ending it again has nothing to do"
    );

    let actions: Vec<String> = app
        .owner_client()
        .await
        .query(
            "SELECT action FROM audit_log WHERE action LIKE 'tenant.maintenance.%' ORDER BY id",
            &[],
        )
        .await
        .expect("audit")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        actions,
        [
            "tenant.maintenance.on",
            "tenant.maintenance.on",
            "tenant.maintenance.off"
        ]
    );
}

#[tokio::test]
async fn bad_maintenance_requests_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    app.create_tenant("steady").await;
    let (status, body) = put_maintenance(&app, "steady", &json!({ "note": "x".repeat(501) })).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = put_maintenance(&app, "steady", &json!({ "reason": "typo" })).await;
    assert!(
        (400..500).contains(&status) && body["error"]["code"].is_string(),
        "{status} {body}"
    );
    let (status, body) = put_maintenance(&app, "nobody", &json!({})).await;
    assert_eq!(status, 404, "{body}");
    let response = app
        .http
        .put(format!(
            "{}/api/owner/tenants/steady/maintenance",
            app.address
        ))
        .json(&json!({}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401, "no token");
    app.create_operator("viewer@example.com", "viewer").await;
    let viewer = app
        .login("viewer@example.com", crate::helpers::OPERATOR_PASSWORD)
        .await;
    let response = app
        .http
        .put(format!(
            "{}/api/owner/tenants/steady/maintenance",
            app.address
        ))
        .bearer_auth(&viewer)
        .json(&json!({}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 403, "viewers cannot");
    assert_eq!(maintenance_column(&app, "steady").await, None);
    assert_eq!(status_on(&app, "steady.localhost").await, (200, None));
}

#[tokio::test]
async fn an_operations_maintenance_cannot_be_ended_by_hand_and_an_operators_outlives_operations() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("busy").await;
    let id: uuid::Uuid = tenant["id"].as_str().expect("id").parse().expect("uuid");
    let owner = app.owner_client().await;
    let fetch = || async {
        owner::tenants::tenant_fetch(&app.owner_client().await, id)
            .await
            .expect("tenant")
    };

    // A restore holds it: operators can neither change nor end it, nor suspend.
    take_for(&owner, &fetch().await, Holder::Restore, false)
        .await
        .expect("take");
    let (status, body) = put_maintenance(&app, "busy", &json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("tenant_in_maintenance")),
        "{body}"
    );
    let (status, body) = end_maintenance(&app, "busy").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("tenant_in_maintenance")),
        "{body}"
    );
    let err = app
        .provisioner()
        .tenant_suspend(id, &Actor::cli())
        .await
        .expect_err("no suspension during a restore");
    assert!(err.to_string().contains("maintenance"), "{err}");
    // A second operation cannot take it either.
    let err = take_for(&owner, &fetch().await, Holder::Migration, false)
        .await
        .expect_err("held by the restore");
    assert!(err.to_string().contains("restore"), "{err}");
    assert!(
        release_for(&owner, id, Holder::Restore)
            .await
            .expect("release")
    );
    assert_eq!(fetch().await.maintenance, None);

    // An operator's maintenance: operations run under it and leave it in place.
    assert_eq!(
        put_maintenance(&app, "busy", &json!({ "note": "hands off" }))
            .await
            .0,
        200
    );
    take_for(&owner, &fetch().await, Holder::Migration, false)
        .await
        .expect("runs under the operator's");
    assert!(
        !release_for(&owner, id, Holder::Migration)
            .await
            .expect("release")
    );
    let kept = fetch().await.maintenance.expect("still in maintenance");
    assert_eq!(
        (kept.by, kept.note.as_deref()),
        (Holder::Operator, Some("hands off"))
    );
    // And it does not stop lifecycle changes.
    app.provisioner()
        .tenant_suspend(id, &Actor::cli())
        .await
        .expect("suspend under an operator's maintenance");
}

#[tokio::test]
async fn migrate_with_maintenance_refuses_each_tenants_requests_while_it_changes() {
    let app = spawn_app().await;
    let tenants = app.create_tenants("quiet", 2).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join(crate::helpers::microchip_file()),
        "ALTER TABLE patients ADD COLUMN microchip text;\n",
    )
    .expect("write migration");
    // Another process runs the migration; the serving one learns of the maintenance
    // through the change feed.
    let services = app.services_with_dir(Some(dir.path())).await;

    // Hold the first tenant's migration: ALTER TABLE waits for this reader.
    let mut reader = pg(&tenants[0].db_name).await;
    let blocker = reader.transaction().await.expect("begin");
    blocker
        .query("SELECT * FROM patients LIMIT 1", &[])
        .await
        .expect("read");
    let run = FleetRun::start(
        services.fleet.clone(),
        FleetOptions {
            concurrency: 1,
            maintenance: true,
            ..FleetOptions::default()
        },
        "test",
    )
    .await
    .expect("start");
    let running = tokio::spawn(async move { run.execute(|_| {}).await });

    let held = format!("{}.localhost", tenants[0].slug);
    eventually("the tenant being migrated to be in maintenance", || async {
        match status_on(&app, &held).await {
            (503, Some(code)) if code == "tenant_maintenance" => Ok(()),
            seen => Err(seen),
        }
    })
    .await;
    assert_eq!(
        maintenance_column(&app, &tenants[0].slug).await.as_deref(),
        Some("migration")
    );
    blocker.rollback().await.expect("let the migration go");

    let summary = running.await.expect("join").expect("run");
    assert_eq!((summary.succeeded, summary.failed), (2, 0), "{summary:?}");
    for t in &tenants {
        assert_eq!(maintenance_column(&app, &t.slug).await, None, "{}", t.slug);
        let host = format!("{}.localhost", t.slug);
        eventually("the migrated tenant to be served again", || async {
            match status_on(&app, &host).await {
                (200, None) => Ok(()),
                seen => Err(seen),
            }
        })
        .await;
    }
}

#[tokio::test]
async fn maintenance_left_by_a_dead_run_is_ended_once_no_run_is_live() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("stranded").await;
    let id: uuid::Uuid = tenant["id"].as_str().expect("id").parse().expect("uuid");
    let owner = app.owner_client().await;

    // A live run (it holds the fleet lock) ends its own: the recovery leaves it.
    let key = "hashtextextended('cp-fleet-migration', 0)";
    let live: bool = owner
        .query_one(&format!("SELECT pg_try_advisory_lock({key})"), &[])
        .await
        .expect("lock")
        .get(0);
    assert!(live);
    take_for(
        &owner,
        &owner::tenants::tenant_fetch(&owner, id)
            .await
            .expect("tenant"),
        Holder::Migration,
        false,
    )
    .await
    .expect("take");
    let fleet = &app.services.fleet;
    assert_eq!(fleet.recover_left_maintenance().await.expect("recover"), 0);
    assert_eq!(
        maintenance_column(&app, "stranded").await.as_deref(),
        Some("migration")
    );

    // The run is gone: the next pass (this one, or the service's own) ends it.
    owner
        .execute(&format!("SELECT pg_advisory_unlock({key})"), &[])
        .await
        .expect("unlock");
    eventually("the left maintenance to be ended", || async {
        fleet.recover_left_maintenance().await.expect("recover");
        match maintenance_column(&app, "stranded").await {
            None => Ok(()),
            Some(held) => Err(held),
        }
    })
    .await;
    eventually("the tenant to be served again", || async {
        match status_on(&app, "stranded.localhost").await {
            (200, None) => Ok(()),
            seen => Err(seen),
        }
    })
    .await;
}
