//! Tenant users: the first admin, login, refresh, logout, one-time passwords, and tokens
//! that only ever work on their own tenant's domain.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, pg, spawn_app};

const PASSWORD: &str = "tenant-admin-password";

async fn create_with_admin(app: &TestApp, slug: &str, password: Option<&str>) -> Value {
    let mut body =
        json!({ "slug": slug, "name": slug, "admin_email": format!("admin@{slug}.example") });
    if let Some(pw) = password {
        body["admin_password"] = json!(pw);
    }
    let response = app
        .post_json("/api/owner/tenants?wait=true", Some(&app.token), &body)
        .await;
    assert_eq!(response.status(), 201);
    response.json().await.expect("json")
}

async fn login(app: &TestApp, slug: &str, password: &str) -> (u16, Value) {
    let host = format!("{slug}.localhost");
    let body = json!({ "email": format!("admin@{slug}.example"), "password": password });
    let response = app
        .on(Method::POST, &host, "/api/v1/auth/login", None, Some(&body))
        .await;
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn me(app: &TestApp, host: &str, token: &str) -> (u16, Value) {
    let response = app
        .on(Method::GET, host, "/api/v1/me", Some(token), None)
        .await;
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

fn sign(secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("sign")
}

#[tokio::test]
async fn the_first_admin_logs_in_refreshes_and_logs_out() {
    let app = spawn_app().await;
    let tenant = create_with_admin(&app, "acme", Some(PASSWORD)).await;
    assert!(tenant.get("one_time_password").is_none());
    let stored: Option<Value> = app
        .owner_client()
        .await
        .query_one("SELECT initial_admin FROM tenants WHERE slug = 'acme'", &[])
        .await
        .expect("row")
        .get(0);
    assert!(
        stored.is_none(),
        "the admin's hash is not kept once the tenant is active"
    );

    let wrong = login(&app, "acme", "wrong-password").await;
    assert_eq!(wrong.0, 401, "{}", wrong.1);
    let (status, tokens) = login(&app, "acme", PASSWORD).await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().expect("access");
    let (status, user) = me(&app, "acme.localhost", access).await;
    assert_eq!(
        (status, user["email"].as_str(), user["role"].as_str()),
        (200, Some("admin@acme.example"), Some("admin"))
    );
    assert!(user.get("password_hash").is_none());

    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    let body = json!({ "refresh_token": refresh });
    let renewed = app
        .on(
            Method::POST,
            "acme.localhost",
            "/api/v1/auth/refresh",
            None,
            Some(&body),
        )
        .await;
    assert_eq!(renewed.status(), 200);
    let renewed: Value = renewed.json().await.expect("json");
    let again = app
        .on(
            Method::POST,
            "acme.localhost",
            "/api/v1/auth/refresh",
            None,
            Some(&body),
        )
        .await;
    assert_eq!(again.status(), 401, "a refresh token works once");

    let body = json!({ "refresh_token": renewed["refresh_token"] });
    assert_eq!(
        app.on(
            Method::POST,
            "acme.localhost",
            "/api/v1/auth/logout",
            None,
            Some(&body)
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        app.on(
            Method::POST,
            "acme.localhost",
            "/api/v1/auth/refresh",
            None,
            Some(&body)
        )
        .await
        .status(),
        401,
        "revoked by logout"
    );

    let bad = app
        .http
        .post(format!("{}/api/v1/auth/login", app.address))
        .header("host", "acme.localhost")
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .expect("request");
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn a_one_time_password_must_be_changed_first() {
    let app = spawn_app().await;
    let tenant = create_with_admin(&app, "fresh", None).await;
    let otp = tenant["one_time_password"]
        .as_str()
        .expect("one-time password shown once")
        .to_string();
    let shown: Value = app
        .get("/api/owner/tenants/fresh", Some(&app.token))
        .await
        .json()
        .await
        .expect("json");
    assert!(
        shown.get("one_time_password").is_none(),
        "never shown again"
    );
    let (status, tokens) = login(&app, "fresh", &otp).await;
    assert_eq!(
        (status, tokens["must_change_password"].as_bool()),
        (200, Some(true))
    );
    let access = tokens["access_token"].as_str().expect("access");
    assert_eq!(me(&app, "fresh.localhost", access).await.0, 403);
    let change = json!({ "current_password": otp, "new_password": "short" });
    assert_eq!(
        app.on(
            Method::POST,
            "fresh.localhost",
            "/api/v1/auth/password",
            Some(access),
            Some(&change)
        )
        .await
        .status(),
        422
    );
    let change = json!({ "current_password": otp, "new_password": PASSWORD });
    let changed = app
        .on(
            Method::POST,
            "fresh.localhost",
            "/api/v1/auth/password",
            Some(access),
            Some(&change),
        )
        .await;
    assert_eq!(changed.status(), 200);
    let changed: Value = changed.json().await.expect("json");
    assert_eq!(
        me(
            &app,
            "fresh.localhost",
            changed["access_token"].as_str().expect("token")
        )
        .await
        .0,
        200
    );
    assert_eq!(
        login(&app, "fresh", &otp).await.0,
        401,
        "the one-time password is gone"
    );
    assert_eq!(login(&app, "fresh", PASSWORD).await.0, 200);
}

#[tokio::test]
async fn tokens_work_only_on_their_own_tenant_and_only_when_well_formed() {
    let app = spawn_app().await;
    let a = create_with_admin(&app, "alpha", Some(PASSWORD)).await;
    let b = create_with_admin(&app, "bravo", Some(PASSWORD)).await;
    let (_, tokens) = login(&app, "alpha", PASSWORD).await;
    let a_token = tokens["access_token"].as_str().expect("token").to_string();
    let (_, a_user) = me(&app, "alpha.localhost", &a_token).await;

    // B gets a user with the very same id as A's admin.
    let a_id: uuid::Uuid = a_user["id"].as_str().expect("id").parse().expect("uuid");
    pg(b["db_name"].as_str().expect("db"))
        .await
        .execute("INSERT INTO users (id, email, password_hash, role) VALUES ($1, 'twin@bravo.example', 'x', 'admin')", &[&a_id])
        .await
        .expect("twin");
    assert_eq!(
        me(&app, "bravo.localhost", &a_token).await.0,
        401,
        "A's token on B"
    );

    let a_uuid: uuid::Uuid = a["id"].as_str().expect("id").parse().expect("uuid");
    let a_row = {
        let conn = app.services.owner.conn().await.expect("owner");
        owner::tenants::tenant_fetch(&**conn, a_uuid)
            .await
            .expect("tenant")
    };
    let secret = app.services.access.token_secret(&a_row).expect("secret");
    let key = secrecy::ExposeSecret::expose_secret(&secret).to_vec();
    let now = jsonwebtoken::get_current_timestamp();
    let good = json!({ "sub": a_id, "aud": "tenant", "iss": "control-plane", "tid": a_uuid, "exp": now + 60, "iat": now, "role": "admin" });
    assert_eq!(
        me(&app, "alpha.localhost", &sign(&key, &good)).await.0,
        200,
        "a well-formed token works"
    );
    let mut no_aud = good.clone();
    no_aud.as_object_mut().expect("object").remove("aud");
    let mut expired = good.clone();
    expired["exp"] = json!(now - 120);
    let mut other_tenant = good.clone();
    other_tenant["tid"] = json!(b["id"]);
    let mut tampered = sign(&key, &good);
    let last = tampered.pop().expect("char");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let alg_none = {
        use base64::Engine;
        let enc = |v: &Value| base64::prelude::BASE64_URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.",
            enc(&json!({ "alg": "none", "typ": "JWT" })),
            enc(&good)
        )
    };
    for (label, token) in [
        ("no aud", sign(&key, &no_aud)),
        ("expired", sign(&key, &expired)),
        ("other tid", sign(&key, &other_tenant)),
        ("tampered signature", tampered),
        ("alg none", alg_none),
        ("operator token", app.token.clone()),
        ("garbage", "x.y.z".to_string()),
    ] {
        assert_eq!(me(&app, "alpha.localhost", &token).await.0, 401, "{label}");
    }
}

#[tokio::test]
async fn admins_manage_users_within_the_plan_and_other_roles_cannot() {
    let app = spawn_app().await;
    create_with_admin(&app, "team", Some(PASSWORD)).await; // plan "free": 3 users
    create_with_admin(&app, "other", Some(PASSWORD)).await;
    let host = "team.localhost";
    let (_, tokens) = login(&app, "team", PASSWORD).await;
    let admin = tokens["access_token"].as_str().expect("token").to_string();

    let new_user = |email: &str, role: &str| json!({ "email": email, "name": "N", "role": role, "password": "user-password-1" });
    let staff = app
        .on(
            Method::POST,
            host,
            "/api/v1/users",
            Some(&admin),
            Some(&new_user("staff@team.example", "staff")),
        )
        .await;
    assert_eq!(staff.status(), 201);
    let staff: Value = staff.json().await.expect("json");
    let viewer = app
        .on(
            Method::POST,
            host,
            "/api/v1/users",
            Some(&admin),
            Some(&new_user("viewer@team.example", "viewer")),
        )
        .await;
    assert_eq!(viewer.status(), 201);
    let over = app
        .on(
            Method::POST,
            host,
            "/api/v1/users",
            Some(&admin),
            Some(&new_user("fourth@team.example", "staff")),
        )
        .await;
    assert_eq!(over.status(), 409);
    assert_eq!(
        over.json::<Value>().await.expect("json")["error"]["code"],
        "plan_limit"
    );
    for bad in [
        new_user("nope", "staff"),
        new_user("x@team.example", "root"),
        json!({ "email": "y@team.example", "role": "staff", "password": "short" }),
    ] {
        let response = app
            .on(
                Method::POST,
                host,
                "/api/v1/users",
                Some(&admin),
                Some(&bad),
            )
            .await;
        assert_eq!(response.status(), 422, "{bad}");
    }

    // Staff and viewers may not manage users.
    let login_as = |email: &'static str| {
        let app = &app;
        async move {
            let body = json!({ "email": email, "password": "user-password-1" });
            let r: Value = app
                .on(Method::POST, host, "/api/v1/auth/login", None, Some(&body))
                .await
                .json()
                .await
                .expect("json");
            r["access_token"].as_str().expect("token").to_string()
        }
    };
    let staff_token = login_as("staff@team.example").await;
    assert_eq!(
        app.on(Method::GET, host, "/api/v1/users", Some(&staff_token), None)
            .await
            .status(),
        403
    );
    assert_eq!(me(&app, host, &staff_token).await.0, 200);

    // Ids of one tenant mean nothing on another.
    let staff_id = staff["id"].as_str().expect("id");
    let (_, other_tokens) = login(&app, "other", PASSWORD).await;
    let other_admin = other_tokens["access_token"].as_str().expect("token");
    let path = format!("/api/v1/users/{staff_id}");
    assert_eq!(
        app.on(
            Method::GET,
            "other.localhost",
            &path,
            Some(other_admin),
            None
        )
        .await
        .status(),
        404
    );
    let patch = json!({ "role": "admin" });
    assert_eq!(
        app.on(
            Method::PATCH,
            "other.localhost",
            &path,
            Some(other_admin),
            Some(&patch)
        )
        .await
        .status(),
        404
    );
    assert_eq!(
        app.on(
            Method::DELETE,
            "other.localhost",
            &path,
            Some(other_admin),
            None
        )
        .await
        .status(),
        404
    );

    // Disabling a user ends their access at once.
    let disable = json!({ "status": "disabled" });
    let disabled = app
        .on(Method::PATCH, host, &path, Some(&admin), Some(&disable))
        .await;
    assert_eq!(disabled.status(), 200);
    assert_eq!(me(&app, host, &staff_token).await.0, 401);
    let admin_id = me(&app, host, &admin).await.1["id"]
        .as_str()
        .expect("id")
        .to_string();
    let own = format!("/api/v1/users/{admin_id}");
    assert_eq!(
        app.on(Method::DELETE, host, &own, Some(&admin), None)
            .await
            .status(),
        409,
        "no self-deletion"
    );
    assert_eq!(
        app.on(Method::DELETE, host, &path, Some(&admin), None)
            .await
            .status(),
        204
    );
    assert_eq!(
        app.on(Method::GET, host, &path, Some(&admin), None)
            .await
            .status(),
        404
    );
}
