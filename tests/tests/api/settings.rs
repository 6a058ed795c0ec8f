//! Tenant settings and feature flags (set by operators, read by the tenant app, gating
//! routes), the public logo, and the database quota (writes refused over the plan's
//! max_database_bytes, reads, sign-ins and deletions still served).

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, spawn_app};

async fn patch(app: &TestApp, path: &str, token: &str, body: &Value) -> (u16, Value) {
    let response = app
        .http
        .patch(format!("{}{path}", app.address))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn call(
    app: &TestApp,
    method: Method,
    slug: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let response = app
        .on(
            method,
            &format!("{slug}.localhost"),
            path,
            token,
            body.as_ref(),
        )
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// What the tenant app reads, without a token.
async fn app_settings(app: &TestApp, slug: &str) -> Value {
    let (status, body) = call(app, Method::GET, slug, "/api/v1/settings", None, None).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn upload(app: &TestApp, slug: &str, token: &str, name: &str, kind: &str) -> (u16, Value) {
    let response = app
        .http
        .post(format!("{}/api/v1/files/uploads?name={name}", app.address))
        .header("host", format!("{slug}.localhost"))
        .header("content-type", kind)
        .bearer_auth(token)
        .body(b"\x89PNG\r\n\x1a\nnot really a png".to_vec())
        .send()
        .await
        .expect("upload");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn audit_count(app: &TestApp, action: &str) -> i64 {
    app.owner_client()
        .await
        .query_one(
            "SELECT count(*) FROM audit_log WHERE action = $1",
            &[&action],
        )
        .await
        .expect("audit")
        .get(0)
}

#[tokio::test]
async fn settings_set_by_operators_are_served_to_the_tenant_app() {
    let app = spawn_app().await;
    let (_tenant, _admin) = app.tenant_with_admin("brio", "free").await;

    let defaults = app_settings(&app, "brio").await;
    assert_eq!(defaults["time_zone"], "UTC");
    assert_eq!(defaults["locale"], "en");
    assert_eq!(
        defaults["brand_name"], "brio",
        "the tenant's name by default"
    );
    assert_eq!(defaults["brand_colour"], Value::Null);
    assert_eq!(defaults["logo_url"], Value::Null);
    assert_eq!(defaults["features"], json!(["core", "files"]));

    let (status, body) = patch(
        &app,
        "/api/owner/tenants/brio/settings",
        &app.token,
        &json!({ "time_zone": "Europe/Rome", "locale": "it-IT", "brand_colour": "#1a7f5a",
                 "brand_name": "Clinica Brio" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["settings"]["time_zone"], "Europe/Rome");
    assert_eq!(body["features"], json!(["core", "files"]));
    let served = eventually("the new settings are served", || async {
        let s = app_settings(&app, "brio").await;
        if s["time_zone"] == "Europe/Rome" {
            Ok(s)
        } else {
            Err(s)
        }
    })
    .await;
    assert_eq!(served["locale"], "it-IT");
    assert_eq!(served["brand_colour"], "#1a7f5a");
    assert_eq!(served["brand_name"], "Clinica Brio");

    // null resets one field; the others stay.
    let (status, body) = patch(
        &app,
        "/api/owner/tenants/brio/settings",
        &app.token,
        &json!({ "locale": null }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["settings"]["locale"], "en");
    assert_eq!(body["settings"]["time_zone"], "Europe/Rome");
    eventually("the reset locale is served", || async {
        let s = app_settings(&app, "brio").await;
        if s["locale"] == "en" { Ok(()) } else { Err(s) }
    })
    .await;
    assert_eq!(audit_count(&app, "tenant.settings.update").await, 2);

    let shown: Value = app
        .get("/api/owner/tenants/brio/settings", Some(&app.token))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(shown["settings"]["brand_name"], "Clinica Brio");
    assert_eq!(shown["plan_features"], json!(["core", "files"]));
}

#[tokio::test]
async fn bad_settings_are_refused_with_the_field_named_and_change_nothing() {
    let app = spawn_app().await;
    app.create_tenant("tidy").await;
    let path = "/api/owner/tenants/tidy/settings";
    for (body, field) in [
        (json!({ "time_zone": "Mars/Olympus_Mons" }), "time_zone"),
        (json!({ "time_zone": "../../etc/passwd" }), "time_zone"),
        (json!({ "locale": "english" }), "locale"),
        (json!({ "brand_colour": "red" }), "brand_colour"),
        (json!({ "brand_name": "" }), "brand_name"),
        (json!({ "colour": "#000000" }), "settings"),
        (json!({ "logo_file_id": "../logo.png" }), "settings"),
        (json!(["time_zone"]), "settings"),
    ] {
        let (status, answer) = patch(&app, path, &app.token, &body).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(
            answer["error"]["code"], "validation_failed",
            "{body}: {answer}"
        );
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(field)),
            "{body}: {answer}"
        );
    }
    let (status, answer) = patch(
        &app,
        "/api/owner/tenants/tidy/features",
        &app.token,
        &json!({ "Files": true, "x": "yes" }),
    )
    .await;
    assert_eq!(status, 422, "{answer}");

    let malformed = app
        .http
        .patch(format!("{}{path}", app.address))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body("{\"locale\": ")
        .send()
        .await
        .expect("request");
    assert_eq!(malformed.status(), 400);
    let (status, _) = patch(
        &app,
        "/api/owner/tenants/nobody/settings",
        &app.token,
        &json!({ "locale": "it" }),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = patch(&app, path, "forged.token", &json!({ "locale": "it" })).await;
    assert_eq!(status, 401);
    app.create_operator("viewer@example.com", "viewer").await;
    let viewer = app
        .login("viewer@example.com", crate::helpers::OPERATOR_PASSWORD)
        .await;
    let (status, _) = patch(&app, path, &viewer, &json!({ "locale": "it" })).await;
    assert_eq!(status, 403);

    let stored: Value = app
        .owner_client()
        .await
        .query_one(
            "SELECT settings || jsonb_build_object('features', features) FROM tenants WHERE slug = 'tidy'",
            &[],
        )
        .await
        .expect("row")
        .get(0);
    assert_eq!(stored, json!({ "features": {} }), "nothing was stored");
    assert_eq!(audit_count(&app, "tenant.settings.update").await, 0);
    assert_eq!(audit_count(&app, "tenant.features.update").await, 0);
}

#[tokio::test]
async fn a_feature_taken_away_closes_its_routes_until_it_is_given_back() {
    let app = spawn_app().await;
    let (_tenant, admin) = app.tenant_with_admin("gated", "free").await;
    let (status, _) = call(
        &app,
        Method::GET,
        "gated",
        "/api/v1/files",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200);

    let (status, body) = patch(
        &app,
        "/api/owner/tenants/gated/features",
        &app.token,
        &json!({ "files": false, "beta-charts": true }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["features"], json!(["beta-charts", "core"]));
    assert_eq!(
        body["feature_overrides"],
        json!({ "beta-charts": true, "files": false })
    );
    eventually("the files routes are closed", || async {
        let (status, body) = call(
            &app,
            Method::GET,
            "gated",
            "/api/v1/files",
            Some(&admin),
            None,
        )
        .await;
        if status == 403 && body["error"]["code"] == "feature_disabled" {
            Ok(())
        } else {
            Err((status, body))
        }
    })
    .await;
    // An upload is refused before anything is written.
    let (status, body) = upload(&app, "gated", &admin, "a.png", "image/png").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("feature_disabled"))
    );
    let written = std::fs::read_dir(app.storage_root.join("tenants/gated/uploads"))
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert_eq!(written, 0, "nothing written");
    // Other routes are not affected; the app sees the features it has.
    let (status, _) = call(&app, Method::GET, "gated", "/api/v1/me", Some(&admin), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        app_settings(&app, "gated").await["features"],
        json!(["beta-charts", "core"])
    );

    // null leaves the feature to the plan again.
    let (status, body) = patch(
        &app,
        "/api/owner/tenants/gated/features",
        &app.token,
        &json!({ "files": null }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    eventually("the files routes are open again", || async {
        let (status, body) = call(
            &app,
            Method::GET,
            "gated",
            "/api/v1/files",
            Some(&admin),
            None,
        )
        .await;
        if status == 200 {
            Ok(())
        } else {
            Err((status, body))
        }
    })
    .await;

    // A plan's features apply to its tenants: taking files off the plan closes them.
    let plan: Value = app
        .get("/api/owner/plans/free", Some(&app.token))
        .await
        .json()
        .await
        .expect("plan");
    let mut fields = plan.clone();
    for key in ["code", "created_at"] {
        fields.as_object_mut().expect("object").remove(key);
    }
    fields["features"] = json!(["core"]);
    let edited = app
        .http
        .put(format!("{}/api/owner/plans/free", app.address))
        .bearer_auth(&app.token)
        .json(&fields)
        .send()
        .await
        .expect("request");
    assert_eq!(
        edited.status(),
        200,
        "{}",
        edited.text().await.unwrap_or_default()
    );
    eventually("the plan's features apply", || async {
        let (status, body) = call(
            &app,
            Method::GET,
            "gated",
            "/api/v1/files",
            Some(&admin),
            None,
        )
        .await;
        if status == 403 {
            Ok(())
        } else {
            Err((status, body))
        }
    })
    .await;
    assert_eq!(audit_count(&app, "tenant.features.update").await, 2);
}

#[tokio::test]
async fn the_logo_is_public_only_while_it_is_an_image_named_in_the_settings() {
    let app = spawn_app().await;
    let (_tenant, admin) = app.tenant_with_admin("logo", "free").await;
    let (status, _) = call(
        &app,
        Method::GET,
        "logo",
        "/api/v1/settings/logo",
        None,
        None,
    )
    .await;
    assert_eq!(status, 404, "no logo set");

    let (status, image) = upload(&app, "logo", &admin, "logo.png", "image/png").await;
    assert_eq!(status, 201, "{image}");
    let (status, page) = upload(&app, "logo", &admin, "notes.html", "text/html").await;
    assert_eq!(status, 201, "{page}");

    let (status, body) = patch(
        &app,
        "/api/owner/tenants/logo/settings",
        &app.token,
        &json!({ "logo_file_id": image["id"] }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let logo = eventually("the logo is served without a token", || async {
        let response = app
            .get_on("logo.localhost", "/api/v1/settings/logo", &[])
            .await;
        if response.status() == 200 {
            Ok(response)
        } else {
            Err(response.status())
        }
    })
    .await;
    assert_eq!(logo.headers()["content-type"], "image/png");
    assert_eq!(logo.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        logo.bytes().await.expect("bytes").as_ref(),
        b"\x89PNG\r\n\x1a\nnot really a png"
    );
    assert_eq!(
        app_settings(&app, "logo").await["logo_url"],
        "/api/v1/settings/logo"
    );

    // Any other file stays behind its token, even when named as the logo.
    let (status, body) = patch(
        &app,
        "/api/owner/tenants/logo/settings",
        &app.token,
        &json!({ "logo_file_id": page["id"] }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    eventually("an HTML file is not served as the logo", || async {
        let (status, body) = call(
            &app,
            Method::GET,
            "logo",
            "/api/v1/settings/logo",
            None,
            None,
        )
        .await;
        if status == 404 {
            Ok(())
        } else {
            Err((status, body))
        }
    })
    .await;
}

#[tokio::test]
async fn over_the_database_quota_writes_are_refused_and_reads_sign_ins_and_deletions_served() {
    let app = spawn_app().await;
    let created = app
        .post_json(
            "/api/owner/plans",
            Some(&app.token),
            &json!({ "code": "tiny", "name": "Tiny", "max_database_bytes": 1, "price_cents": 0,
                     "features": ["core", "files"] }),
        )
        .await;
    assert_eq!(created.status(), 201);
    let (_tenant, admin) = app.tenant_with_admin("full", "tiny").await;
    let (status, practice) = call(
        &app,
        Method::POST,
        "full",
        "/api/v1/practices",
        Some(&admin),
        Some(json!({ "name": "Main" })),
    )
    .await;
    assert_eq!(
        status, 201,
        "under quota until metering says otherwise: {practice}"
    );

    app.state.metering.sample_once().await.expect("sample");
    let refused = eventually("writes are refused over the quota", || async {
        let (status, body) = call(
            &app,
            Method::POST,
            "full",
            "/api/v1/practices",
            Some(&admin),
            Some(json!({ "name": "Second" })),
        )
        .await;
        if status == 507 {
            Ok(body)
        } else {
            Err((status, body))
        }
    })
    .await;
    assert_eq!(refused["error"]["code"], "database_quota");
    let (status, list) = call(
        &app,
        Method::GET,
        "full",
        "/api/v1/practices",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        list["items"].as_array().map(Vec::len),
        Some(1),
        "the refused write left nothing"
    );
    let (status, _) = call(
        &app,
        Method::POST,
        "full",
        "/api/v1/auth/login",
        None,
        Some(json!({ "email": "admin@full.example", "password": crate::helpers::TENANT_ADMIN_PASSWORD })),
    )
    .await;
    assert_eq!(status, 200, "signing in still works");
    let id = practice["id"].as_str().expect("id");
    let (status, body) = call(
        &app,
        Method::DELETE,
        "full",
        &format!("/api/v1/practices/{id}"),
        Some(&admin),
        None,
    )
    .await;
    assert!(
        status == 200 || status == 204,
        "deleting is served: {status} {body}"
    );

    // Lifting the plan's limit lifts the refusal at once (no new sample needed).
    let plan: Value = app
        .get("/api/owner/plans/tiny", Some(&app.token))
        .await
        .json()
        .await
        .expect("plan");
    let mut fields = plan.clone();
    for key in ["code", "created_at"] {
        fields.as_object_mut().expect("object").remove(key);
    }
    fields["max_database_bytes"] = Value::Null;
    let edited = app
        .http
        .put(format!("{}/api/owner/plans/tiny", app.address))
        .bearer_auth(&app.token)
        .json(&fields)
        .send()
        .await
        .expect("request");
    assert_eq!(edited.status(), 200);
    eventually("writes are served again", || async {
        let (status, body) = call(
            &app,
            Method::POST,
            "full",
            "/api/v1/practices",
            Some(&admin),
            Some(json!({ "name": "Again" })),
        )
        .await;
        if status == 201 {
            Ok(())
        } else {
            Err((status, body))
        }
    })
    .await;
}
