//! Integrations: credentials sealed with the tenant's own key and never shown again,
//! tested and synced against the provider (a real HTTP server started here, at the base
//! URL the configuration gives the provider), every call logged, the feature and the
//! permissions enforced, and a master key rotation that leaves them working.

use reqwest::Method;
use serde_json::json;

use crate::fake_provider::{BAD, GOOD, app_with, call, closed_port, provider};
use crate::helpers::TENANT_ADMIN_PASSWORD;

#[tokio::test]
async fn credentials_are_sealed_tested_synced_and_never_shown() {
    let stripe = provider().await;
    let app = app_with(&stripe.base, &closed_port().await, None).await;
    let (_, admin) = app.tenant_with_admin("shop", "pro").await;
    let mut texts = Vec::new();

    let (status, created, text) = call(
        &app,
        Method::POST,
        "shop",
        "/api/v1/integrations",
        &admin,
        Some(json!({ "provider": "stripe", "name": "Payments", "credentials": { "secret_key": GOOD } })),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    texts.push(text);
    assert_eq!(created["credentials_hint"], "…6789");
    assert_eq!(created["status"], "connected");
    let id = created["id"].as_str().expect("id").to_string();

    let (status, tested, text) = call(
        &app,
        Method::POST,
        "shop",
        &format!("/api/v1/integrations/{id}/test"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    texts.push(text);
    assert_eq!(
        (tested["ok"].as_bool(), tested["status"].as_i64()),
        (Some(true), Some(200))
    );
    assert_eq!(
        stripe.seen.lock().expect("seen").last().cloned(),
        Some(("/v1/balance".to_string(), format!("Bearer {GOOD}"))),
        "the provider got the key as a bearer token"
    );

    // Revoked credentials: the test fails, the integration says so.
    let (status, _, text) = call(
        &app,
        Method::PATCH,
        "shop",
        &format!("/api/v1/integrations/{id}"),
        &admin,
        Some(json!({ "credentials": { "secret_key": BAD } })),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    texts.push(text);
    let (_, tested, text) = call(
        &app,
        Method::POST,
        "shop",
        &format!("/api/v1/integrations/{id}/test"),
        &admin,
        None,
    )
    .await;
    texts.push(text);
    assert_eq!(
        (tested["ok"].as_bool(), tested["status"].as_i64()),
        (Some(false), Some(401))
    );
    let (_, shown, text) = call(
        &app,
        Method::GET,
        "shop",
        &format!("/api/v1/integrations/{id}"),
        &admin,
        None,
    )
    .await;
    texts.push(text);
    assert_eq!(shown["status"], "error");
    assert_eq!(shown["last_error"], "Stripe answered HTTP 401");

    // Good again, then a sync.
    call(
        &app,
        Method::PATCH,
        "shop",
        &format!("/api/v1/integrations/{id}"),
        &admin,
        Some(json!({ "credentials": { "secret_key": GOOD } })),
    )
    .await;
    let (_, synced, text) = call(
        &app,
        Method::POST,
        "shop",
        &format!("/api/v1/integrations/{id}/sync"),
        &admin,
        None,
    )
    .await;
    texts.push(text);
    assert_eq!(synced["ok"], true, "{synced}");
    let (_, shown, text) = call(
        &app,
        Method::GET,
        "shop",
        &format!("/api/v1/integrations/{id}"),
        &admin,
        None,
    )
    .await;
    texts.push(text);
    assert_eq!(shown["status"], "connected");
    assert!(shown["last_sync_at"].is_string(), "{shown}");
    let (_, log, text) = call(
        &app,
        Method::GET,
        "shop",
        &format!("/api/v1/integrations/{id}/calls"),
        &admin,
        None,
    )
    .await;
    texts.push(text);
    let operations: Vec<(&str, i64)> = log["items"]
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| {
            (
                c["operation"].as_str().unwrap_or(""),
                c["status"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(operations, [("sync", 200), ("test", 401), ("test", 200)]);

    // Staff see integrations, without the hint, and cannot change them.
    let (status, _, _) = call(
        &app,
        Method::POST,
        "shop",
        "/api/v1/users",
        &admin,
        Some(json!({ "email": "desk@shop.example", "role": "staff", "password": TENANT_ADMIN_PASSWORD })),
    )
    .await;
    assert_eq!(status, 201);
    let staff = app
        .tenant_login("shop", "desk@shop.example", TENANT_ADMIN_PASSWORD)
        .await;
    let (status, listed, text) = call(
        &app,
        Method::GET,
        "shop",
        "/api/v1/integrations",
        &staff,
        None,
    )
    .await;
    assert_eq!(status, 200);
    texts.push(text);
    assert!(
        listed["items"][0].get("credentials_hint").is_none(),
        "{listed}"
    );
    let (status, _, _) = call(
        &app,
        Method::POST,
        "shop",
        &format!("/api/v1/integrations/{id}/test"),
        &staff,
        None,
    )
    .await;
    assert_eq!(status, 403);

    // Disabled: never called.
    call(
        &app,
        Method::PATCH,
        "shop",
        &format!("/api/v1/integrations/{id}"),
        &admin,
        Some(json!({ "enabled": false })),
    )
    .await;
    let calls_before = stripe.seen.lock().expect("seen").len();
    let (status, answer, _) = call(
        &app,
        Method::POST,
        "shop",
        &format!("/api/v1/integrations/{id}/test"),
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("integration_disabled"))
    );
    assert_eq!(stripe.seen.lock().expect("seen").len(), calls_before);

    // The secret appears in no answer, and not in the tenant's database in the clear.
    for text in &texts {
        assert!(!text.contains(GOOD) && !text.contains(BAD), "{text}");
    }
    let db: String = app
        .owner_client()
        .await
        .query_one(
            "SELECT db_name FROM tenants WHERE slug = 'shop' AND status <> 'deleted'",
            &[],
        )
        .await
        .expect("db")
        .get(0);
    let stored: Vec<u8> = crate::helpers::pg(&db)
        .await
        .query_one("SELECT credentials_enc FROM integrations", &[])
        .await
        .expect("row")
        .get(0);
    assert!(
        !stored.windows(GOOD.len()).any(|w| w == GOOD.as_bytes()),
        "sealed, not stored in the clear"
    );
    // Copied to another integration's row, the sealed credentials do not open.
    let (_, other, _) = call(
        &app,
        Method::POST,
        "shop",
        "/api/v1/integrations",
        &admin,
        Some(
            json!({ "provider": "stripe", "name": "Other", "credentials": { "secret_key": BAD } }),
        ),
    )
    .await;
    let other_id: uuid::Uuid = other["id"].as_str().expect("id").parse().expect("uuid");
    crate::helpers::pg(&db)
        .await
        .execute(
            "UPDATE integrations SET credentials_enc = $1 WHERE id = $2",
            &[&stored, &other_id],
        )
        .await
        .expect("copy");
    let (status, _, _) = call(
        &app,
        Method::POST,
        "shop",
        &format!("/api/v1/integrations/{other_id}/test"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 500, "a copied ciphertext does not open");
}

#[tokio::test]
async fn bad_input_unreachable_providers_and_plans_without_the_feature() {
    let stripe = provider().await;
    let app = app_with(&stripe.base, &closed_port().await, None).await;
    let (_, admin) = app.tenant_with_admin("desk", "pro").await;
    for (body, code) in [
        (
            json!({ "provider": "paypal", "name": "x", "credentials": {} }),
            "unknown_provider",
        ),
        (
            json!({ "provider": "stripe", "name": "x", "credentials": {} }),
            "invalid_credentials",
        ),
        (
            json!({ "provider": "stripe", "name": "x", "credentials": { "secret_key": GOOD, "extra": "y" } }),
            "invalid_credentials",
        ),
        (
            json!({ "provider": "square", "name": "x", "credentials": { "access_token": GOOD, "location_id": "../../admin" } }),
            "invalid_credentials",
        ),
        (
            json!({ "provider": "stripe", "name": " ", "credentials": { "secret_key": GOOD } }),
            "invalid_value",
        ),
    ] {
        let (status, answer, text) = call(
            &app,
            Method::POST,
            "desk",
            "/api/v1/integrations",
            &admin,
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (422, Some(code)),
            "{body}"
        );
        assert!(!text.contains(GOOD), "{text}");
    }
    let (_, listed, _) = call(
        &app,
        Method::GET,
        "desk",
        "/api/v1/integrations",
        &admin,
        None,
    )
    .await;
    assert_eq!(listed["items"], json!([]), "nothing was made");
    assert!(
        stripe.seen.lock().expect("seen").is_empty(),
        "no provider was called"
    );

    // A provider that cannot be reached: the test says so, the call is logged.
    let (status, square, text) = call(
        &app,
        Method::POST,
        "desk",
        "/api/v1/integrations",
        &admin,
        Some(json!({ "provider": "square", "name": "Till", "credentials": { "access_token": GOOD, "location_id": "L1" } })),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let id = square["id"].as_str().expect("id");
    let (status, tested, _) = call(
        &app,
        Method::POST,
        "desk",
        &format!("/api/v1/integrations/{id}/test"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(tested["ok"], false);
    assert!(
        tested["error"]
            .as_str()
            .is_some_and(|e| e.contains("could not be reached")),
        "{tested}"
    );
    let (status, _, _) = call(
        &app,
        Method::POST,
        "desk",
        "/api/v1/integrations",
        &admin,
        Some(json!({ "provider": "square", "name": "Till", "credentials": { "access_token": GOOD, "location_id": "L2" } })),
    )
    .await;
    assert_eq!(status, 409, "one name per provider");

    // The free plan has no integrations.
    let (_, free) = app.tenant_with_admin("small", "free").await;
    let (status, answer, _) = call(
        &app,
        Method::GET,
        "small",
        "/api/v1/integrations",
        &free,
        None,
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (403, Some("feature_disabled"))
    );
}

#[tokio::test]
async fn a_master_key_rotation_leaves_integration_credentials_working() {
    use base64::Engine;
    let key = |n: u8| base64::prelude::BASE64_STANDARD.encode([n; 32]);
    let stripe = provider().await;
    let app = app_with(
        &stripe.base,
        &closed_port().await,
        Some(format!("1:{},2:{}", key(3), key(4))),
    )
    .await;
    let keys = &app.services.keys;
    let actor = control_plane::audit::Actor::cli();
    keys.rotate(&actor, Some(1)).await.expect("seal with 1");
    let (_, admin) = app.tenant_with_admin("kept", "pro").await;
    let (_, created, _) = call(
        &app,
        Method::POST,
        "kept",
        "/api/v1/integrations",
        &admin,
        Some(json!({ "provider": "stripe", "name": "Payments", "credentials": { "secret_key": GOOD } })),
    )
    .await;
    let id = created["id"].as_str().expect("id").to_string();
    keys.rotate(&actor, None).await.expect("rotate");
    let report = keys.rewrap(&actor, None, &|_, _| {}).await.expect("rewrap");
    assert_eq!(report.remaining, 0);
    keys.retire(&actor, 1).await.expect("retire");
    app.state.gateway.forget(None).await;
    let (_, tested, _) = call(
        &app,
        Method::POST,
        "kept",
        &format!("/api/v1/integrations/{id}/test"),
        &admin,
        None,
    )
    .await;
    assert_eq!(tested["ok"], true, "{tested}");
}

#[tokio::test]
async fn the_scheduled_sync_calls_each_due_integration_once() {
    let stripe = provider().await;
    let app = app_with(&stripe.base, &closed_port().await, None).await;
    let (_, admin) = app.tenant_with_admin("sched", "pro").await;
    let mut ids = Vec::new();
    for name in ["Payments", "Old account"] {
        let (status, created, text) = call(
            &app,
            Method::POST,
            "sched",
            "/api/v1/integrations",
            &admin,
            Some(json!({ "provider": "stripe", "name": name, "credentials": { "secret_key": GOOD } })),
        )
        .await;
        assert_eq!(status, 201, "{text}");
        ids.push(created["id"].as_str().expect("id").to_string());
    }
    let (status, _, _) = call(
        &app,
        Method::PATCH,
        "sched",
        &format!("/api/v1/integrations/{}", ids[1]),
        &admin,
        Some(json!({ "enabled": false })),
    )
    .await;
    assert_eq!(status, 200);
    // A tenant without the feature is not visited.
    app.tenant_with_admin("plain", "free").await;

    let services = &app.services;
    let sync = control_plane::integration_sync::IntegrationSync::new(
        services.owner.clone(),
        std::sync::Arc::clone(&services.access),
        services.provider_client.clone(),
        services.config.integration_endpoints.clone(),
        std::time::Duration::from_secs(3600),
    );
    let pass = sync.run_once().await.expect("pass");
    assert_eq!(
        (pass.tenants, pass.synced, pass.failed, pass.unreachable),
        (1, 1, 0, 0)
    );
    assert_eq!(
        stripe
            .seen
            .lock()
            .expect("seen")
            .last()
            .map(|(path, _)| path.clone()),
        Some("/v1/charges?limit=100".to_string())
    );
    let log = |id: String| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let (_, log, _) = call(
                app,
                Method::GET,
                "sched",
                &format!("/api/v1/integrations/{id}/calls"),
                &admin,
                None,
            )
            .await;
            log["items"].as_array().map(Vec::len).unwrap_or(0)
        }
    };
    assert_eq!(log(ids[0].clone()).await, 1, "the due one was synced");
    assert_eq!(log(ids[1].clone()).await, 0, "the disabled one was not");

    // Synced within the interval: not due again.
    let again = sync.run_once().await.expect("pass");
    assert_eq!((again.synced, again.failed), (0, 0));
    assert_eq!(log(ids[0].clone()).await, 1);
}
