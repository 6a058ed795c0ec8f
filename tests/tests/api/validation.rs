//! Bad input gets a clear JSON error with the right status, and changes nothing:
//! no row, no database, no role, no directory.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

async fn assert_nothing_changed(app: &TestApp, tenants_before: i64) {
    assert_eq!(
        app.count("SELECT count(*) FROM tenants").await,
        tenants_before,
        "a tenant row was written"
    );
    let (dbs, roles) = app.server_objects().await;
    let tenant_dbs: Vec<_> = dbs.iter().filter(|d| !d.ends_with("template")).collect();
    let tenant_roles: Vec<_> = roles.iter().filter(|r| !r.contains("template")).collect();
    assert!(tenant_dbs.is_empty(), "databases made: {tenant_dbs:?}");
    assert!(tenant_roles.is_empty(), "roles made: {tenant_roles:?}");
    assert!(
        app.tenant_dirs().is_empty(),
        "directories made: {:?}",
        app.tenant_dirs()
    );
}

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("error bodies are JSON");
    let code = body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_string();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty() && !m.starts_with("Failed to")),
        "error.message says what is wrong, in our words: {body}"
    );
    (status, code)
}

#[tokio::test]
async fn bad_slugs_are_refused_with_422_and_nothing_is_made() {
    let app = spawn_app().await;
    let long = "a".repeat(64);
    for slug in [
        "../x",
        "Postgres",
        "postgres",
        "pg_x",
        "pg-thing",
        long.as_str(),
        "аcme",
        "acme\u{200b}",
        "a",
        "1abc",
        "",
        "template1",
        "owner",
        "www",
        "a b",
        "acme/../../etc",
    ] {
        let response = app
            .post_json(
                "/api/owner/tenants",
                Some(&app.token),
                &json!({ "slug": slug, "name": "X" }),
            )
            .await;
        let (status, code) = error_of(response).await;
        assert_eq!(
            (status, code.as_str()),
            (422, "invalid_slug"),
            "slug {slug:?}"
        );
    }
    assert_nothing_changed(&app, 0).await;
}

#[tokio::test]
async fn bad_domains_plans_and_names_are_refused_and_nothing_is_made() {
    let app = spawn_app().await;
    for domain in [
        "bücher.example",
        "аcme.example.com",
        "no_underscores.example.com",
        "localhost",
        "-a.example.com",
        "evil.localhost",
        "a..b.com",
        "x.com/../../etc",
    ] {
        let response = app
            .post_json(
                "/api/owner/tenants",
                Some(&app.token),
                &json!({ "slug": "fine", "name": "Fine", "domains": [domain] }),
            )
            .await;
        let (status, code) = error_of(response).await;
        assert_eq!(
            (status, code.as_str()),
            (422, "invalid_domain"),
            "domain {domain:?}"
        );
    }
    let response = app
        .post_json(
            "/api/owner/tenants",
            Some(&app.token),
            &json!({ "slug": "fine", "name": "Fine", "plan": "platinum" }),
        )
        .await;
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unknown_plan");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("platinum") && m.contains("free, starter, pro, enterprise")),
        "the message names the plans to choose from: {body}"
    );
    let response = app
        .post_json(
            "/api/owner/tenants",
            Some(&app.token),
            &json!({ "slug": "fine", "name": "   " }),
        )
        .await;
    assert_eq!(
        error_of(response).await,
        (422, "validation_failed".to_string())
    );
    assert_nothing_changed(&app, 0).await;
}

#[tokio::test]
async fn malformed_or_oversized_bodies_are_refused_and_nothing_is_made() {
    let app = spawn_app().await;
    let response = app
        .post_raw("/api/owner/tenants", "{\"slug\": \"acme\", ")
        .await;
    assert_eq!(
        error_of(response).await,
        (400, "malformed_json".to_string())
    );
    let response = app
        .post_raw("/api/owner/tenants", "{\"slug\": \"acme\"}")
        .await;
    assert_eq!(
        error_of(response).await,
        (422, "invalid_body".to_string()),
        "missing name"
    );
    let response = app
        .post_raw(
            "/api/owner/tenants",
            "{\"slug\": \"acme\", \"name\": \"A\", \"db_name\": \"postgres\"}",
        )
        .await;
    assert_eq!(
        error_of(response).await,
        (422, "invalid_body".to_string()),
        "unknown fields are refused"
    );
    let response = app
        .http
        .post(format!("{}/api/owner/tenants", app.address))
        .bearer_auth(&app.token)
        .body("slug=acme")
        .send()
        .await
        .expect("request");
    assert_eq!(
        error_of(response).await,
        (415, "unsupported_media_type".to_string())
    );
    let huge = json!({ "slug": "acme", "name": "x".repeat(200_000) });
    let response = app
        .post_json("/api/owner/tenants", Some(&app.token), &huge)
        .await;
    assert_eq!(
        error_of(response).await,
        (413, "payload_too_large".to_string())
    );
    let response = app
        .get("/api/owner/tenants?limit=abc", Some(&app.token))
        .await;
    assert_eq!(error_of(response).await, (400, "invalid_query".to_string()));
    assert_nothing_changed(&app, 0).await;
}

#[tokio::test]
async fn taken_domains_conflict_and_unknown_tenants_are_404() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/api/owner/tenants?wait=true",
            Some(&app.token),
            &json!({ "slug": "first", "name": "First", "domains": ["clinic.example.com"] }),
        )
        .await;
    assert_eq!(response.status(), 201);
    let response = app
        .post_json(
            "/api/owner/tenants",
            Some(&app.token),
            &json!({ "slug": "second", "name": "Second", "domains": ["Clinic.Example.com."] }),
        )
        .await;
    assert_eq!(error_of(response).await, (409, "domain_taken".to_string()));
    let response = app
        .post_json(
            "/api/owner/tenants",
            Some(&app.token),
            &json!({ "slug": "first", "name": "Again" }),
        )
        .await;
    assert_eq!(error_of(response).await, (409, "slug_taken".to_string()));
    assert_eq!(app.count("SELECT count(*) FROM tenants").await, 1);
    for path in [
        "/api/owner/tenants/nope",
        "/api/owner/tenants/00000000-0000-0000-0000-000000000000",
        "/api/owner/nothing-here",
    ] {
        let response = app.get(path, Some(&app.token)).await;
        assert_eq!(error_of(response).await.0, 404, "{path}");
    }
}

#[tokio::test]
async fn nul_characters_in_owner_input_are_refused_and_nothing_is_made() {
    let app = spawn_app().await;
    // PostgreSQL refuses NUL in text; that must not surface as a 500.
    let response = app
        .post_json(
            "/api/owner/auth/login",
            None,
            &json!({ "email": "owner\u{0}@example.com", "password": "whatever-it-is" }),
        )
        .await;
    let (status, _) = error_of(response).await;
    assert!(matches!(status, 400 | 422), "login: {status}");
    let response = app
        .post_json(
            "/api/owner/tenants",
            Some(&app.token),
            &json!({ "slug": "fine", "name": "Fi\u{0}ne" }),
        )
        .await;
    let (status, _) = error_of(response).await;
    assert!(matches!(status, 400 | 422), "tenant name: {status}");
    let response = app
        .get("/api/owner/audit?actor=cli%00", Some(&app.token))
        .await;
    let (status, _) = error_of(response).await;
    assert!(matches!(status, 400 | 422), "query: {status}");
    assert_nothing_changed(&app, 0).await;
}

#[tokio::test]
async fn a_method_a_route_does_not_take_gets_405_with_a_json_error_and_allow() {
    let app = spawn_app().await;
    app.create_tenant("methods").await;
    let owner = app
        .http
        .patch(format!("{}/api/owner/plans", app.address))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("request");
    let tenant = app
        .http
        .put(format!("{}/api/v1/status", app.address))
        .header("host", "methods.localhost")
        .send()
        .await
        .expect("request");
    for response in [owner, tenant] {
        assert_eq!(response.status(), 405);
        assert!(
            response.headers().contains_key("allow"),
            "405 names the methods the route takes"
        );
        let body: Value = response.json().await.expect("a JSON body");
        assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    }
}
