//! Several processes on one owner database. A change made by any of them (here a second
//! set of services, as the CLI or another replica has) reaches the serving process
//! through the owner database's change feed, well before its caches would expire; and
//! after the feed's session is lost, what was missed meanwhile is forgotten too.

use std::time::Duration;

use control_plane::audit::Actor;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, eventually, spawn_app, status_on, terminate_backends, within};

/// Well under the caches' lifetimes (30 s for a known domain, 60 s for plan limits), so
/// a change seen within it came through the feed, not through an expiry.
const PROMPTLY: Duration = Duration::from_secs(10);

/// Waits until `host` answers `expected` (a status and an error code).
async fn answers(app: &TestApp, host: &str, expected: (u16, Option<&str>), what: &str) {
    within(PROMPTLY, what, || async {
        let seen = status_on(app, host).await;
        if (seen.0, seen.1.as_deref()) == expected {
            Ok(())
        } else {
            Err(seen)
        }
    })
    .await;
}

/// Waits until the service's change feed listens (the service waits for it before it
/// serves, but only for a while).
async fn feed_listening(app: &TestApp) {
    eventually("the change feed to listen", || async {
        let body: Value = app
            .get("/readyz", None)
            .await
            .json()
            .await
            .unwrap_or(Value::Null);
        if body["change_feed"] == "listening" {
            Ok(())
        } else {
            Err(body)
        }
    })
    .await;
}

fn id_of(tenant: &Value) -> Uuid {
    tenant["id"].as_str().expect("id").parse().expect("uuid")
}

#[tokio::test]
async fn tenant_and_domain_changes_made_elsewhere_are_served_at_once() {
    let app = spawn_app().await;
    feed_listening(&app).await;
    let tenant = app.create_tenant("echo").await;
    let id = id_of(&tenant);
    let cli = app.services_with_dir(None).await;

    // Cached by the service, then changed by the other process.
    assert_eq!(status_on(&app, "echo.localhost").await, (200, None));
    cli.provisioner
        .tenant_suspend(id, &Actor::cli())
        .await
        .expect("suspend");
    answers(
        &app,
        "echo.localhost",
        (403, Some("tenant_suspended")),
        "a suspension made elsewhere",
    )
    .await;
    cli.provisioner
        .tenant_resume(id, &Actor::cli())
        .await
        .expect("resume");
    answers(
        &app,
        "echo.localhost",
        (200, None),
        "a resumption made elsewhere",
    )
    .await;

    cli.domains
        .add(id, "echo.example.org", false, &Actor::cli())
        .await
        .expect("add domain");
    answers(
        &app,
        "echo.example.org",
        (200, None),
        "a domain added elsewhere",
    )
    .await;
    cli.domains
        .remove(id, "echo.example.org", &Actor::cli())
        .await
        .expect("remove domain");
    answers(
        &app,
        "echo.example.org",
        (404, Some("unknown_tenant")),
        "a domain removed elsewhere",
    )
    .await;
}

#[tokio::test]
async fn plan_limits_edited_elsewhere_apply_at_once() {
    let app = spawn_app().await;
    feed_listening(&app).await;
    // Plan "free" allows 3 active users; the admin is the first.
    let (_tenant, admin) = app.tenant_with_admin("quota", "free").await;
    let create_user = |n: u32| {
        let app = &app;
        let admin = &admin;
        async move {
            let response = app
                .on(
                    Method::POST,
                    "quota.localhost",
                    "/api/v1/users",
                    Some(admin),
                    Some(&json!({
                        "email": format!("user{n}@quota.example"),
                        "role": "staff",
                        "password": "user-password-1",
                    })),
                )
                .await;
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    // The service now holds the plan's limits.
    assert_eq!(create_user(0).await.0, 201);

    let cli = app.services_with_dir(None).await;
    let plan = owner::plans::plan_fetch_active(&app.owner_client().await, "free")
        .await
        .expect("plan free");
    let fields = owner::plans::PlanFields {
        name: plan.name,
        max_users: Some(2),
        max_storage_bytes: plan.max_storage_bytes,
        max_database_bytes: plan.max_database_bytes,
        price_cents: plan.price_cents,
        currency: plan.currency,
        features: serde_json::from_value(plan.features).expect("features"),
        active: plan.active,
        server_group: plan.server_group,
    };
    cli.billing
        .plan_edit(&Actor::cli(), "free", &fields)
        .await
        .expect("edit plan");

    // Two users exist: the new limit refuses a third. A user let in under the old
    // limit is removed again, so each try sees two users.
    let mut n = 1;
    let (app, admin) = (&app, &admin);
    within(PROMPTLY, "the lowered user limit", || {
        n += 1;
        let attempt = create_user(n);
        async move {
            let (status, body) = attempt.await;
            if status == 201 {
                let user = body["id"].as_str().expect("user id").to_string();
                let removed = app
                    .on(
                        Method::DELETE,
                        "quota.localhost",
                        &format!("/api/v1/users/{user}"),
                        Some(admin),
                        None,
                    )
                    .await;
                assert!(removed.status().is_success(), "remove the extra user");
                return Err(status);
            }
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (409, Some("plan_limit")),
                "{body}"
            );
            Ok(())
        }
    })
    .await;
}

#[tokio::test]
async fn after_the_feed_reconnects_every_cached_tenant_is_read_again() {
    let app = spawn_app().await;
    feed_listening(&app).await;
    let tenant = app.create_tenant("gap").await;
    let id = id_of(&tenant);
    assert_eq!(status_on(&app, "gap.localhost").await, (200, None));

    // A change no announcement tells of (triggers are off in replica mode), as one made
    // while the feed's session is down would be.
    let owner = app.owner_client().await;
    owner
        .batch_execute("SET session_replication_role = replica")
        .await
        .expect("replica mode");
    owner
        .execute(
            "UPDATE tenants SET status = 'suspended' WHERE id = $1",
            &[&id],
        )
        .await
        .expect("suspend quietly");
    assert_eq!(
        status_on(&app, "gap.localhost").await,
        (200, None),
        "nothing announced the change, so the cached tenant is still served"
    );

    let killed = terminate_backends(
        "datname = $1 AND application_name = $2",
        &[
            &app.owner_db,
            &control_plane::services::change_feed::APPLICATION_NAME,
        ],
    )
    .await;
    assert_eq!(killed, 1, "the feed's one session");
    answers(
        &app,
        "gap.localhost",
        (403, Some("tenant_suspended")),
        "the change missed while the feed was away",
    )
    .await;
    feed_listening(&app).await;
}
