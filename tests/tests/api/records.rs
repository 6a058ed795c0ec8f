//! The clinic records API, and that two tenants never see or change each other's rows,
//! even when their rows share ids.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, pg, spawn_app};

async fn call(
    app: &TestApp,
    method: Method,
    slug: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let response = app
        .on(
            method,
            &format!("{slug}.localhost"),
            path,
            Some(token),
            body.as_ref(),
        )
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_resource_supports_crud_with_validation() {
    let app = spawn_app().await;
    let (_, token) = app.tenant_with_admin("clinic", "pro").await;
    let (s, practice) = call(
        &app,
        Method::POST,
        "clinic",
        "/api/v1/practices",
        &token,
        Some(json!({ "name": "Main Street" })),
    )
    .await;
    assert_eq!(s, 201, "{practice}");
    let pid = practice["id"].as_str().expect("id").to_string();
    let (s, patient) = call(&app, Method::POST, "clinic", "/api/v1/patients", &token, Some(json!({ "practice_id": pid, "name": "Rex", "species": "dog", "date_of_birth": "2020-02-29" }))).await;
    assert_eq!(s, 201, "{patient}");
    let patient_id = patient["id"].as_str().expect("id").to_string();
    for (path, body) in [
        (
            "/api/v1/appointments",
            json!({ "practice_id": pid, "patient_id": patient_id, "starts_at": "2026-12-01T09:00:00Z", "ends_at": "2026-12-01T09:30:00Z", "reason": "checkup" }),
        ),
        (
            "/api/v1/medical_records",
            json!({ "patient_id": patient_id, "summary": "healthy", "details": { "weight_kg": 31.5 } }),
        ),
        (
            "/api/v1/prescriptions",
            json!({ "patient_id": patient_id, "medication": "Carprofen", "dosage": "75 mg twice daily" }),
        ),
        (
            "/api/v1/inventory",
            json!({ "practice_id": pid, "sku": "CARP-75", "name": "Carprofen 75 mg", "quantity": 40 }),
        ),
    ] {
        let (s, created) = call(&app, Method::POST, "clinic", path, &token, Some(body)).await;
        assert_eq!(s, 201, "{path}: {created}");
        let id = created["id"].as_str().expect("id");
        let (s, fetched) = call(
            &app,
            Method::GET,
            "clinic",
            &format!("{path}/{id}"),
            &token,
            None,
        )
        .await;
        assert_eq!((s, &fetched["id"]), (200, &created["id"]), "{path}");
        let (s, list) = call(
            &app,
            Method::GET,
            "clinic",
            &format!("{path}?limit=10"),
            &token,
            None,
        )
        .await;
        assert_eq!(
            (s, list["items"].as_array().map(Vec::len)),
            (200, Some(1)),
            "{path}"
        );
    }
    // Filters, updates and deletes.
    let (_, dogs) = call(
        &app,
        Method::GET,
        "clinic",
        &format!("/api/v1/patients?practice_id={pid}&species=dog"),
        &token,
        None,
    )
    .await;
    assert_eq!(dogs["items"].as_array().map(Vec::len), Some(1));
    let (_, cats) = call(
        &app,
        Method::GET,
        "clinic",
        "/api/v1/patients?species=cat",
        &token,
        None,
    )
    .await;
    assert_eq!(cats["items"].as_array().map(Vec::len), Some(0));
    let (s, renamed) = call(
        &app,
        Method::PATCH,
        "clinic",
        &format!("/api/v1/patients/{patient_id}"),
        &token,
        Some(json!({ "name": "Rex II" })),
    )
    .await;
    assert_eq!((s, renamed["name"].as_str()), (200, Some("Rex II")));
    assert_eq!(
        call(
            &app,
            Method::DELETE,
            "clinic",
            &format!("/api/v1/patients/{patient_id}"),
            &token,
            None
        )
        .await
        .0,
        409,
        "records still refer to it"
    );

    // Clear 4xx for bad input, nothing written.
    for (path, body, code) in [
        (
            "/api/v1/patients",
            json!({ "name": "No practice" }),
            "missing_field",
        ),
        (
            "/api/v1/patients",
            json!({ "practice_id": pid, "name": "X", "date_of_birth": "31-31-2020" }),
            "invalid_value",
        ),
        (
            "/api/v1/patients",
            json!({ "practice_id": uuid::Uuid::new_v4(), "name": "X" }),
            "unknown_reference",
        ),
        (
            "/api/v1/patients",
            json!({ "practice_id": pid, "name": "X", "id": uuid::Uuid::new_v4() }),
            "invalid_body",
        ),
        (
            "/api/v1/inventory",
            json!({ "practice_id": pid, "sku": "NEG", "name": "n", "quantity": -1 }),
            "invalid_value",
        ),
        (
            "/api/v1/appointments",
            json!({ "practice_id": pid, "patient_id": patient_id, "starts_at": "2026-12-01T10:00:00Z", "ends_at": "2026-12-01T09:00:00Z" }),
            "invalid_value",
        ),
    ] {
        let (s, err) = call(&app, Method::POST, "clinic", path, &token, Some(body)).await;
        assert_eq!(
            (s, err["error"]["code"].as_str()),
            (422, Some(code)),
            "{path}: {err}"
        );
    }
    assert_eq!(
        call(
            &app,
            Method::GET,
            "clinic",
            "/api/v1/patients?owner=me",
            &token,
            None
        )
        .await
        .0,
        400
    );
    assert_eq!(
        call(
            &app,
            Method::GET,
            "clinic",
            "/api/v1/patients/not-a-uuid",
            &token,
            None
        )
        .await
        .0,
        404
    );
    let (_, all) = call(
        &app,
        Method::GET,
        "clinic",
        "/api/v1/patients",
        &token,
        None,
    )
    .await;
    assert_eq!(
        all["items"].as_array().map(Vec::len),
        Some(1),
        "nothing written by refused requests"
    );
}

#[tokio::test]
async fn tenants_with_identical_ids_never_see_or_change_each_other() {
    let app = spawn_app().await;
    let (a, a_token) = app.tenant_with_admin("alpha", "pro").await;
    let (b, b_token) = app.tenant_with_admin("bravo", "pro").await;
    let (_, practice) = call(
        &app,
        Method::POST,
        "alpha",
        "/api/v1/practices",
        &a_token,
        Some(json!({ "name": "Alpha clinic" })),
    )
    .await;
    let id = practice["id"].as_str().expect("id").to_string();
    // Only in A: B knows nothing of it, by any route.
    let path = format!("/api/v1/practices/{id}");
    assert_eq!(
        call(&app, Method::GET, "bravo", &path, &b_token, None)
            .await
            .0,
        404
    );
    assert_eq!(
        call(
            &app,
            Method::PATCH,
            "bravo",
            &path,
            &b_token,
            Some(json!({ "name": "stolen" }))
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(&app, Method::DELETE, "bravo", &path, &b_token, None)
            .await
            .0,
        404
    );
    let (_, listed) = call(
        &app,
        Method::GET,
        "bravo",
        "/api/v1/practices",
        &b_token,
        None,
    )
    .await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(0));
    // A's token does nothing on B's domain, and B's nothing on A's.
    assert_eq!(
        call(
            &app,
            Method::GET,
            "bravo",
            "/api/v1/practices",
            &a_token,
            None
        )
        .await
        .0,
        401
    );
    assert_eq!(
        call(&app, Method::DELETE, "alpha", &path, &b_token, None)
            .await
            .0,
        401
    );

    // B gets a row with the very same id.
    let b_db = b["db_name"].as_str().expect("db");
    pg(b_db)
        .await
        .execute(
            "INSERT INTO practices (id, name) VALUES ($1::text::uuid, 'Bravo clinic')",
            &[&id],
        )
        .await
        .expect("twin row");
    let (_, seen_by_b) = call(&app, Method::GET, "bravo", &path, &b_token, None).await;
    assert_eq!(seen_by_b["name"], "Bravo clinic");
    assert_eq!(
        call(
            &app,
            Method::PATCH,
            "bravo",
            &path,
            &b_token,
            Some(json!({ "name": "Bravo renamed" }))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(&app, Method::DELETE, "bravo", &path, &b_token, None)
            .await
            .0,
        204
    );
    let (s, still_a) = call(&app, Method::GET, "alpha", &path, &a_token, None).await;
    assert_eq!(
        (s, still_a["name"].as_str()),
        (200, Some("Alpha clinic")),
        "A untouched by B's changes"
    );
    let a_db = a["db_name"].as_str().expect("db");
    let n: i64 = pg(a_db)
        .await
        .query_one("SELECT count(*) FROM practices", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn viewers_read_records_but_cannot_change_them() {
    let app = spawn_app().await;
    let (_, admin) = app.tenant_with_admin("ro", "pro").await;
    let viewer =
        json!({ "email": "v@ro.example", "role": "viewer", "password": "viewer-password" });
    assert_eq!(
        call(
            &app,
            Method::POST,
            "ro",
            "/api/v1/users",
            &admin,
            Some(viewer)
        )
        .await
        .0,
        201
    );
    let login = json!({ "email": "v@ro.example", "password": "viewer-password" });
    let tokens: Value = app
        .on(
            Method::POST,
            "ro.localhost",
            "/api/v1/auth/login",
            None,
            Some(&login),
        )
        .await
        .json()
        .await
        .expect("json");
    let v = tokens["access_token"].as_str().expect("token");
    let (_, practice) = call(
        &app,
        Method::POST,
        "ro",
        "/api/v1/practices",
        &admin,
        Some(json!({ "name": "P" })),
    )
    .await;
    let path = format!("/api/v1/practices/{}", practice["id"].as_str().expect("id"));
    assert_eq!(call(&app, Method::GET, "ro", &path, v, None).await.0, 200);
    assert_eq!(
        call(
            &app,
            Method::POST,
            "ro",
            "/api/v1/practices",
            v,
            Some(json!({ "name": "Q" }))
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            &app,
            Method::PATCH,
            "ro",
            &path,
            v,
            Some(json!({ "name": "Q" }))
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(&app, Method::DELETE, "ro", &path, v, None).await.0,
        403
    );
    assert_eq!(
        call(&app, Method::GET, "ro", "/api/v1/practices", "", None)
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn practices_have_members() {
    let app = spawn_app().await;
    let (_, admin) = app.tenant_with_admin("team", "pro").await;
    let (_, practice) = call(
        &app,
        Method::POST,
        "team",
        "/api/v1/practices",
        &admin,
        Some(json!({ "name": "North" })),
    )
    .await;
    let pid = practice["id"].as_str().expect("id");
    let (_, vet) = call(
        &app,
        Method::POST,
        "team",
        "/api/v1/users",
        &admin,
        Some(json!({ "email": "vet@team.example", "role": "staff", "password": "vet-password-1" })),
    )
    .await;
    let vid = vet["id"].as_str().expect("id");
    let path = format!("/api/v1/practices/{pid}/members/{vid}");
    assert_eq!(
        call(
            &app,
            Method::PUT,
            "team",
            &path,
            &admin,
            Some(json!({ "role": "vet" }))
        )
        .await
        .0,
        204
    );
    let (_, members) = call(
        &app,
        Method::GET,
        "team",
        &format!("/api/v1/practices/{pid}/members"),
        &admin,
        None,
    )
    .await;
    assert_eq!(members["members"][0]["email"], "vet@team.example");
    assert_eq!(members["members"][0]["role"], "vet");
    assert_eq!(
        call(
            &app,
            Method::PUT,
            "team",
            &path,
            &admin,
            Some(json!({ "role": "boss" }))
        )
        .await
        .0,
        422
    );
    let ghost = format!("/api/v1/practices/{pid}/members/{}", uuid::Uuid::new_v4());
    assert_eq!(
        call(&app, Method::PUT, "team", &ghost, &admin, Some(json!({})))
            .await
            .0,
        404
    );
    assert_eq!(
        call(&app, Method::DELETE, "team", &path, &admin, None)
            .await
            .0,
        204
    );
    assert_eq!(
        call(&app, Method::DELETE, "team", &path, &admin, None)
            .await
            .0,
        404
    );
}

/// Every paged list, owner or tenant side, answers `{items, total, limit, offset}`, and
/// every time the API gives is RFC 3339 (sign-in expiries included).
#[tokio::test]
async fn paged_lists_share_one_envelope_with_a_total_and_times_are_rfc3339() {
    let app = spawn_app().await;
    let (_, token) = app.tenant_with_admin("envelope", "pro").await;
    app.create_tenants("enveloped", 2).await;
    let page: Value = app
        .get("/api/owner/tenants?limit=2&offset=1", Some(&app.token))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        (&page["total"], &page["limit"], &page["offset"]),
        (&json!(3), &json!(2), &json!(1)),
        "{page}"
    );
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2), "{page}");

    let (s, practice) = call(
        &app,
        Method::POST,
        "envelope",
        "/api/v1/practices",
        &token,
        Some(json!({ "name": "North" })),
    )
    .await;
    assert_eq!(s, 201);
    let pid = practice["id"].as_str().expect("id").to_string();
    for (name, species) in [("Rex", "dog"), ("Tom", "cat"), ("Fido", "dog")] {
        let (s, _) = call(
            &app,
            Method::POST,
            "envelope",
            "/api/v1/patients",
            &token,
            Some(json!({ "practice_id": pid, "name": name, "species": species })),
        )
        .await;
        assert_eq!(s, 201);
    }
    for (path, total) in [
        ("/api/v1/patients?limit=2", 3),
        ("/api/v1/patients?limit=1&species=dog", 2),
        ("/api/v1/users?limit=1", 1),
        ("/api/v1/files?limit=1", 0),
    ] {
        let (s, body) = call(&app, Method::GET, "envelope", path, &token, None).await;
        assert_eq!(s, 200, "{path}: {body}");
        assert!(body["items"].is_array(), "{path}: {body}");
        assert_eq!(body["total"], total, "{path}: {body}");
        assert!(
            body["limit"].is_number() && body["offset"] == 0,
            "{path}: {body}"
        );
    }

    let rfc3339 = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.len() == 20 && s.as_bytes()[10] == b'T' && s.ends_with('Z'))
    };
    let owner: Value = app
        .post_json(
            "/api/owner/auth/login",
            None,
            &json!({"email": "owner@example.com", "password": crate::helpers::OPERATOR_PASSWORD}),
        )
        .await
        .json()
        .await
        .expect("json");
    assert!(rfc3339(&owner["expires_at"]), "{owner}");
    assert!(
        owner["expires_in"].as_u64().is_some_and(|s| s > 0),
        "{owner}"
    );
    let tenant: Value = app
        .on(
            Method::POST,
            "envelope.localhost",
            "/api/v1/auth/login",
            None,
            Some(&json!({"email": "admin@envelope.example", "password": crate::helpers::TENANT_ADMIN_PASSWORD})),
        )
        .await
        .json()
        .await
        .expect("json");
    assert!(rfc3339(&tenant["expires_at"]), "{tenant}");
    assert!(
        tenant["expires_in"].as_i64().is_some_and(|s| s > 0),
        "{tenant}"
    );
}
