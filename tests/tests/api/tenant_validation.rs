//! Bad input to the tenant API gets a clear JSON error with the right 4xx and writes
//! nothing: NUL characters, bodies over the limit, values of the wrong JSON type.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, pg, spawn_app};

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("error bodies are JSON");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error.message: {body}"
    );
    let code = body["error"]["code"].as_str().expect("error.code");
    (status, code.to_string())
}

/// A tenant "clinic" with one practice; the admin's token and the tenant database.
async fn clinic(app: &TestApp) -> (String, tokio_postgres::Client, String) {
    let (tenant, token) = app.tenant_with_admin("clinic", "pro").await;
    let db = pg(tenant["db_name"].as_str().expect("db")).await;
    let practice: Value = app
        .on(
            Method::POST,
            "clinic.localhost",
            "/api/v1/practices",
            Some(&token),
            Some(&json!({ "name": "Main Street" })),
        )
        .await
        .json()
        .await
        .expect("json");
    let pid = practice["id"].as_str().expect("practice id").to_string();
    (token, db, pid)
}

async fn rows(db: &tokio_postgres::Client, table: &str) -> i64 {
    db.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count")
        .get(0)
}

#[tokio::test]
async fn nul_characters_in_tenant_input_are_refused_with_a_4xx() {
    let app = spawn_app().await;
    let (token, db, pid) = clinic(&app).await;
    let host = "clinic.localhost";
    let response = app
        .on(
            Method::GET,
            host,
            "/api/v1/patients?species=dog%00",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(error_of(response).await.0, 400, "NUL in a filter");
    for (path, body) in [
        ("/api/v1/practices", json!({ "name": "a\u{0}b" })),
        (
            "/api/v1/patients",
            json!({ "practice_id": pid, "name": "Rex", "notes": "x\u{0}" }),
        ),
        (
            "/api/v1/users",
            json!({ "email": "n@clinic.example", "name": "a\u{0}b", "role": "staff", "password": "user-password-1" }),
        ),
        (
            "/api/v1/auth/login",
            json!({ "email": "admin\u{0}@clinic.example", "password": "x" }),
        ),
    ] {
        let response = app
            .on(Method::POST, host, path, Some(&token), Some(&body))
            .await;
        let (status, _) = error_of(response).await;
        assert!(matches!(status, 400 | 422), "{path}: {status}");
    }
    assert_eq!(rows(&db, "practices").await, 1);
    assert_eq!(rows(&db, "patients").await, 0);
    assert_eq!(rows(&db, "users").await, 1);
}

#[tokio::test]
async fn tenant_json_bodies_over_the_limit_get_413() {
    let app = spawn_app().await;
    let (token, db, _) = clinic(&app).await;
    for path in ["/api/v1/practices", "/api/v1/users", "/api/v1/auth/login"] {
        let huge = json!({ "name": "x".repeat(200_000) });
        let response = app
            .on(
                Method::POST,
                "clinic.localhost",
                path,
                Some(&token),
                Some(&huge),
            )
            .await;
        assert_eq!(
            error_of(response).await,
            (413, "payload_too_large".to_string()),
            "{path}"
        );
    }
    assert_eq!(rows(&db, "practices").await, 1);
}

#[tokio::test]
async fn tenant_values_of_the_wrong_json_type_are_refused_not_coerced() {
    let app = spawn_app().await;
    let (token, db, pid) = clinic(&app).await;
    for (path, body) in [
        ("/api/v1/practices", json!({ "name": 5 })),
        ("/api/v1/practices", json!({ "name": true })),
        ("/api/v1/practices", json!({ "name": { "first": "Main" } })),
        ("/api/v1/practices", json!({ "name": ["Main"] })),
        (
            "/api/v1/inventory",
            json!({ "practice_id": pid, "sku": "A", "name": "A", "quantity": "5" }),
        ),
        (
            "/api/v1/inventory",
            json!({ "practice_id": pid, "sku": "B", "name": "B", "quantity": 2.5 }),
        ),
        (
            "/api/v1/patients",
            json!({ "practice_id": pid, "name": "Rex", "date_of_birth": 20200229 }),
        ),
    ] {
        let response = app
            .on(
                Method::POST,
                "clinic.localhost",
                path,
                Some(&token),
                Some(&body),
            )
            .await;
        assert_eq!(error_of(response).await.0, 422, "{path}: {body}");
    }
    let practice_id = db
        .query_one("SELECT id FROM practices", &[])
        .await
        .expect("practice")
        .get::<_, uuid::Uuid>(0);
    let response = app
        .on(
            Method::PATCH,
            "clinic.localhost",
            &format!("/api/v1/practices/{practice_id}"),
            Some(&token),
            Some(&json!({ "phone": 5551234 })),
        )
        .await;
    assert_eq!(error_of(response).await.0, 422, "updates are typed too");
    assert_eq!(rows(&db, "practices").await, 1);
    assert_eq!(rows(&db, "inventory").await, 0);
    assert_eq!(rows(&db, "patients").await, 0);
    let phone: Option<String> = db
        .query_one("SELECT phone FROM practices", &[])
        .await
        .expect("phone")
        .get(0);
    assert_eq!(phone, None);
    // Nulls still clear optional fields, and the right types are still accepted.
    let response = app
        .on(
            Method::POST,
            "clinic.localhost",
            "/api/v1/inventory",
            Some(&token),
            Some(&json!({ "practice_id": pid, "sku": "C", "name": "C", "quantity": 3, "unit": null })),
        )
        .await;
    assert_eq!(
        response.status(),
        422,
        "unit is NOT NULL: null is refused by the database"
    );
    let response = app
        .on(
            Method::POST,
            "clinic.localhost",
            "/api/v1/inventory",
            Some(&token),
            Some(&json!({ "practice_id": pid, "sku": "C", "name": "C", "quantity": 3 })),
        )
        .await;
    assert_eq!(response.status(), 201);
}
