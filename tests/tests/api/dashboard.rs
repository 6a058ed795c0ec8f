//! Operators in the dashboard and on the owner API: cookie sessions and CSRF, roles,
//! revocation, sign-in throttling, invitations, plans and subscriptions.

use reqwest::Method;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::helpers::{OPERATOR_PASSWORD, TestApp, eventually, spawn_app};

/// A browser-like session: the session cookie and the CSRF token its pages carry.
struct Browser {
    cookie: String,
    csrf: String,
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or_default().to_string())
}

fn csrf_in(html: &str) -> String {
    html.split("name=\"_csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a form with a CSRF token")
        .to_string()
}

/// Signs in through the login form, as a browser does.
async fn sign_in(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    let http = no_redirects();
    let page = http
        .get(format!("{}/owner/login", app.address))
        .send()
        .await
        .expect("login page");
    let login_cookie = set_cookie(&page, "cp_login_csrf").expect("login CSRF cookie");
    let token = csrf_in(&page.text().await.expect("html"));
    http.post(format!("{}/owner/login", app.address))
        .header(COOKIE, login_cookie)
        .form(&[
            ("_csrf", token.as_str()),
            ("email", email),
            ("password", password),
            ("next", "/owner/tenants"),
        ])
        .send()
        .await
        .expect("sign in")
}

async fn browser(app: &TestApp, email: &str) -> Browser {
    let response = sign_in(app, email, OPERATOR_PASSWORD).await;
    assert_eq!(response.status(), 303, "sign-in did not redirect");
    assert_eq!(response.headers()[LOCATION], "/owner/tenants");
    let raw = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("cp_session="))
        .expect("session cookie")
        .to_string();
    assert!(
        raw.contains("HttpOnly") && raw.contains("SameSite=Strict"),
        "{raw}"
    );
    let cookie = raw.split(';').next().unwrap_or_default().to_string();
    let page = no_redirects()
        .get(format!("{}/owner", app.address))
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("overview");
    assert_eq!(page.status(), 200);
    let csrf = csrf_in(&page.text().await.expect("html"));
    Browser { cookie, csrf }
}

impl Browser {
    async fn get(&self, app: &TestApp, path: &str) -> reqwest::Response {
        no_redirects()
            .get(format!("{}{path}", app.address))
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .expect("get")
    }

    async fn form(&self, app: &TestApp, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        no_redirects()
            .post(format!("{}{path}", app.address))
            .header(COOKIE, &self.cookie)
            .form(fields)
            .send()
            .await
            .expect("post form")
    }
}

async fn tenant_count(app: &TestApp) -> i64 {
    app.count("SELECT count(*) FROM tenants").await
}

#[tokio::test]
async fn a_viewer_can_look_but_every_change_is_refused() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("looked-at").await;
    let id = tenant["id"].as_str().expect("id");
    app.create_operator("viewer@example.com", "viewer").await;
    let viewer = app.login("viewer@example.com", OPERATOR_PASSWORD).await;
    let audit_before = app.count("SELECT count(*) FROM audit_log").await;
    let changes: Vec<(Method, String, Value)> = vec![
        (
            Method::POST,
            "/api/owner/tenants".into(),
            json!({"slug": "nope", "name": "Nope"}),
        ),
        (
            Method::DELETE,
            format!("/api/owner/tenants/{id}"),
            json!({}),
        ),
        (
            Method::POST,
            format!("/api/owner/tenants/{id}/suspend"),
            json!({}),
        ),
        (
            Method::POST,
            format!("/api/owner/tenants/{id}/resume"),
            json!({}),
        ),
        (
            Method::POST,
            format!("/api/owner/tenants/{id}/domains"),
            json!({"domain": "x.example.com"}),
        ),
        (
            Method::DELETE,
            format!("/api/owner/tenants/{id}/domains/looked-at.localhost"),
            json!({}),
        ),
        (
            Method::POST,
            format!("/api/owner/tenants/{id}/domains/looked-at.localhost/primary"),
            json!({}),
        ),
        (
            Method::PUT,
            format!("/api/owner/tenants/{id}/subscription"),
            json!({"plan": "pro"}),
        ),
        (
            Method::POST,
            "/api/owner/plans".into(),
            json!({"code": "gold", "name": "Gold", "price_cents": 1}),
        ),
        (
            Method::PUT,
            "/api/owner/plans/free".into(),
            json!({"name": "Free!", "price_cents": 0}),
        ),
        (
            Method::POST,
            "/api/owner/operators".into(),
            json!({"email": "x@example.com", "role": "owner"}),
        ),
        (
            Method::POST,
            "/api/owner/migrations".into(),
            json!({"dry_run": true}),
        ),
    ];
    for (method, path, body) in &changes {
        let response = app
            .on(method.clone(), "127.0.0.1", path, Some(&viewer), Some(body))
            .await;
        assert_eq!(response.status(), 403, "{method} {path}");
    }
    // The dashboard refuses the same, with a valid CSRF token.
    let b = browser(&app, "viewer@example.com").await;
    assert_eq!(b.get(&app, "/owner/tenants").await.status(), 200);
    let csrf = b.csrf.clone();
    for (path, extra) in [
        ("/owner/tenants", ("slug", "nope")),
        (&*format!("/owner/tenants/{id}/suspend"), ("x", "y")),
        (
            &*format!("/owner/tenants/{id}/delete"),
            ("confirm", "looked-at"),
        ),
        (
            &*format!("/owner/tenants/{id}/domains"),
            ("domain", "y.example.com"),
        ),
        ("/owner/plans", ("code", "gold")),
        ("/owner/plans/free", ("name", "Free!")),
        ("/owner/operators", ("email", "x@example.com")),
        ("/owner/migrations", ("dry_run", "on")),
        (&*format!("/owner/tenants/{id}/backup"), ("x", "y")),
        (
            &*format!("/owner/tenants/{id}/restore"),
            ("confirm", "looked-at"),
        ),
        (&*format!("/owner/tenants/{id}/maintenance"), ("note", "n")),
        (&*format!("/owner/tenants/{id}/settings"), ("locale", "it")),
        (
            &*format!("/owner/tenants/{id}/features"),
            ("feature", "files"),
        ),
    ] {
        let response = b.form(&app, path, &[("_csrf", &csrf), extra]).await;
        assert_eq!(response.status(), 403, "dashboard POST {path}");
    }
    assert_eq!(tenant_count(&app).await, 1);
    let status = app
        .count("SELECT count(*) FROM tenants WHERE status = 'active'")
        .await;
    assert_eq!(status, 1, "the viewer changed the tenant");
    assert_eq!(
        app.count("SELECT count(*) FROM subscription_plans WHERE code = 'gold' OR name = 'Free!'")
            .await,
        0
    );
    assert_eq!(app.count("SELECT count(*) FROM migration_runs").await, 0);
    // Only the viewer's two sign-ins were recorded.
    let audit_after = app.count("SELECT count(*) FROM audit_log").await;
    assert_eq!(
        audit_after - audit_before,
        1,
        "refused requests changed the audit log"
    );
}

#[tokio::test]
async fn a_cookie_session_changes_nothing_without_its_csrf_token() {
    let app = spawn_app().await;
    let b = browser(&app, "owner@example.com").await;
    let other = browser(&app, "owner@example.com").await;
    let http = no_redirects();
    // The owner API with the cookie: refused without the header, or with another
    // session's token.
    for token in [None, Some(other.csrf.as_str())] {
        let mut request = http
            .post(format!("{}/api/owner/tenants", app.address))
            .header(COOKIE, &b.cookie)
            .json(&json!({"slug": "forged", "name": "Forged"}));
        if let Some(token) = token {
            request = request.header("x-csrf-token", token);
        }
        let response = request.send().await.expect("post");
        assert_eq!(response.status(), 403, "token {token:?}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], "csrf_rejected");
    }
    // The dashboard's forms: refused without the field or with a wrong one.
    for fields in [
        vec![("slug", "forged"), ("name", "Forged")],
        vec![
            ("_csrf", other.csrf.as_str()),
            ("slug", "forged"),
            ("name", "Forged"),
        ],
        vec![("_csrf", "AAAA"), ("slug", "forged"), ("name", "Forged")],
    ] {
        let response = b.form(&app, "/owner/tenants", &fields).await;
        assert_eq!(response.status(), 403, "{fields:?}");
    }
    let response = b.form(&app, "/owner/logout", &[]).await;
    assert_eq!(response.status(), 403, "logout without a token");
    assert_eq!(
        tenant_count(&app).await,
        0,
        "a forged request created a tenant"
    );
    // With the token, the same requests work (so the refusals above are about CSRF).
    let response = http
        .post(format!("{}/api/owner/tenants", app.address))
        .header(COOKIE, &b.cookie)
        .header("x-csrf-token", &b.csrf)
        .json(&json!({"slug": "real-one", "name": "Real"}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 202);
    let response = b
        .form(
            &app,
            "/owner/tenants",
            &[
                ("_csrf", &b.csrf),
                ("slug", "real-two"),
                ("name", "Real two"),
                ("plan", "free"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303, "post/redirect/get");
    assert_eq!(tenant_count(&app).await, 2);
}

/// The create form names every mistake at once, and a created tenant's page is reached
/// by a redirect, so reloading it posts nothing again; a one-time admin password is
/// shown on that page once.
#[tokio::test]
async fn the_create_form_shows_every_mistake_and_redirects_after_creating() {
    let app = spawn_app().await;
    let b = browser(&app, "owner@example.com").await;
    let response = b
        .form(
            &app,
            "/owner/tenants",
            &[
                ("_csrf", &b.csrf),
                ("slug", "Bad Slug"),
                ("name", ""),
                ("domains", "not a domain"),
                ("admin_email", "nobody"),
                ("admin_password", "short"),
            ],
        )
        .await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.expect("html");
    let errors = html.matches("class=\"error\"").count();
    assert!(
        errors >= 5,
        "every field's mistake is shown, found {errors}:\n{html}"
    );
    assert_eq!(tenant_count(&app).await, 0);

    let response = b
        .form(
            &app,
            "/owner/tenants",
            &[
                ("_csrf", &b.csrf),
                ("slug", "prg-vets"),
                ("name", "PRG Vets"),
                ("admin_email", "admin@prg-vets.example"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let location = response.headers()[LOCATION]
        .to_str()
        .expect("location")
        .to_string();
    assert!(location.starts_with("/owner/tenants/"), "{location}");
    let flash = set_cookie(&response, "cp_one_time_password").expect("one-time password cookie");
    let page = no_redirects()
        .get(format!("{}{location}", app.address))
        .header(COOKIE, format!("{}; {flash}", b.cookie))
        .send()
        .await
        .expect("tenant page");
    assert_eq!(
        set_cookie(&page, "cp_one_time_password").as_deref(),
        Some("cp_one_time_password="),
        "the password is shown once, then its cookie is cleared"
    );
    let html = page.text().await.expect("html");
    let password = flash.trim_start_matches("cp_one_time_password=");
    assert!(
        html.contains(password) && html.contains("one-time-password"),
        "{html}"
    );
    assert!(html.contains("Tenant created"), "{html}");
    // The page names where the tenant lives: its database, roles, files and a connection
    // template without a password.
    let row = app
        .owner_client()
        .await
        .query_one(
            "SELECT db_name, owner_role, runtime_role FROM tenants WHERE slug = 'prg-vets'",
            &[],
        )
        .await
        .expect("tenant");
    let (db, owner_role, runtime_role): (String, String, String) =
        (row.get(0), row.get(1), row.get(2));
    for fact in [
        db.clone(),
        owner_role,
        format!("postgres://{runtime_role}@"),
        format!("/{db}"),
        "prg-vets".to_string(),
    ] {
        assert!(html.contains(&fact), "{fact} missing from the tenant page");
    }
    // Reloading (without the cleared cookie) shows the page, creates nothing.
    assert_eq!(b.get(&app, &location).await.status(), 200);
    assert_eq!(tenant_count(&app).await, 1);
}

#[tokio::test]
async fn tenant_user_tokens_are_refused_on_owner_routes() {
    let app = spawn_app().await;
    let (_, tenant_token) = app.tenant_with_admin("tokened", "starter").await;
    let response = app.get("/api/owner/tenants", Some(&tenant_token)).await;
    assert_eq!(response.status(), 401);
    let http = no_redirects();
    for request in [
        http.get(format!("{}/owner/tenants", app.address))
            .bearer_auth(&tenant_token),
        http.get(format!("{}/owner/tenants", app.address))
            .header(COOKIE, format!("cp_session={tenant_token}")),
    ] {
        let response = request.send().await.expect("get");
        assert_eq!(response.status(), 303);
        assert!(
            response.headers()[LOCATION]
                .to_str()
                .unwrap_or_default()
                .starts_with("/owner/login"),
            "not sent to sign in"
        );
    }
    // Nor is the dashboard served on a tenant's domain.
    let response = app
        .on(Method::GET, "tokened.localhost", "/owner", None, None)
        .await;
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn signing_out_revokes_the_session_at_once() {
    let app = spawn_app().await;
    let token = app.login("owner@example.com", OPERATOR_PASSWORD).await;
    assert_eq!(app.get("/api/owner/me", Some(&token)).await.status(), 200);
    let response = app
        .on(
            Method::POST,
            "127.0.0.1",
            "/api/owner/auth/logout",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(app.get("/api/owner/me", Some(&token)).await.status(), 401);
    // Other sessions of the same operator go on.
    assert_eq!(
        app.get("/api/owner/me", Some(&app.token)).await.status(),
        200
    );

    let b = browser(&app, "owner@example.com").await;
    let response = b.form(&app, "/owner/logout", &[("_csrf", &b.csrf)]).await;
    assert_eq!(response.status(), 303);
    assert!(
        set_cookie(&response, "cp_session").is_some(),
        "cookie not cleared"
    );
    let response = b.get(&app, "/owner").await;
    assert_eq!(
        response.status(),
        303,
        "a signed-out cookie still opens the dashboard"
    );
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_per_account_and_audited() {
    let app = spawn_app().await;
    app.create_operator("target@example.com", "admin").await;
    for _ in 0..5 {
        let response = sign_in(&app, "target@example.com", "wrong password!").await;
        assert_eq!(response.status(), 401);
    }
    // Even the right password is refused now, with a time to come back.
    let response = sign_in(&app, "target@example.com", OPERATOR_PASSWORD).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let response = app
        .post_json(
            "/api/owner/auth/login",
            None,
            &json!({"email": "target@example.com", "password": OPERATOR_PASSWORD}),
        )
        .await;
    assert_eq!(response.status(), 429, "the API is not throttled");
    assert_eq!(
        app.count("SELECT count(*) FROM audit_log WHERE action = 'operator.login_failed' AND target_id = 'target@example.com'").await,
        5
    );
    assert_eq!(
        app.count("SELECT count(*) FROM audit_log WHERE action = 'operator.login_throttled'")
            .await,
        2
    );
    // Another account from the same address is not locked out.
    let response = sign_in(&app, "owner@example.com", OPERATOR_PASSWORD).await;
    assert_eq!(response.status(), 303);
}

#[tokio::test]
async fn an_invited_operator_chooses_a_password_and_disabling_is_immediate() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/api/owner/operators",
            Some(&app.token),
            &json!({"email": "new@example.com", "role": "admin"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.expect("json");
    let one_time = body["one_time_password"]
        .as_str()
        .expect("password")
        .to_string();
    let id = body["operator"]["id"].as_str().expect("id").to_string();
    let token = app.login("new@example.com", &one_time).await;
    let response = app.get("/api/owner/tenants", Some(&token)).await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.json::<Value>().await.expect("json")["error"]["code"],
        "password_change_required"
    );
    let response = app
        .post_json(
            "/api/owner/me/password",
            Some(&token),
            &json!({"current_password": one_time, "new_password": "my own password"}),
        )
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(
        app.get("/api/owner/tenants", Some(&token)).await.status(),
        200
    );

    let response = app
        .on(
            Method::PATCH,
            "127.0.0.1",
            &format!("/api/owner/operators/{id}"),
            Some(&app.token),
            Some(&json!({"active": false})),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.get("/api/owner/tenants", Some(&token)).await.status(),
        401
    );

    // The last active owner can be neither demoted nor disabled.
    let me: Value = app
        .get("/api/owner/me", Some(&app.token))
        .await
        .json()
        .await
        .expect("json");
    let response = app
        .on(
            Method::PATCH,
            "127.0.0.1",
            &format!("/api/owner/operators/{}", me["id"].as_str().expect("id")),
            Some(&app.token),
            Some(&json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(response.status(), 409);
    assert_eq!(
        app.count("SELECT count(*) FROM owner_users WHERE role = 'owner' AND status = 'active'")
            .await,
        1
    );
}

#[tokio::test]
async fn plans_are_managed_and_a_plan_change_applies_at_the_next_request() {
    let app = spawn_app().await;
    let (tenant, admin) = app.tenant_with_admin("growing", "starter").await;
    let id = tenant["id"].as_str().expect("id");
    // A bad plan is refused and nothing is written.
    for bad in [
        json!({"code": "Bad Code", "name": "X", "price_cents": 1}),
        json!({"code": "tiny", "name": "", "price_cents": 1}),
        json!({"code": "tiny", "name": "Tiny", "price_cents": -1}),
        json!({"code": "tiny", "name": "Tiny", "price_cents": 1, "max_users": 0}),
    ] {
        let response = app
            .post_json("/api/owner/plans", Some(&app.token), &bad)
            .await;
        assert_eq!(response.status(), 422, "{bad}");
    }
    assert_eq!(
        app.count("SELECT count(*) FROM subscription_plans WHERE code = 'tiny'")
            .await,
        0
    );
    let response = app
        .post_json(
            "/api/owner/plans",
            Some(&app.token),
            &json!({"code": "tiny", "name": "Tiny", "price_cents": 900, "max_users": 1, "features": ["core"]}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let response = app
        .post_json(
            "/api/owner/plans",
            Some(&app.token),
            &json!({"code": "tiny", "name": "Again", "price_cents": 1}),
        )
        .await;
    assert_eq!(response.status(), 409);

    // Moving the tenant to the one-user plan: its admin cannot add a second user.
    let response = app
        .on(
            Method::PUT,
            "127.0.0.1",
            &format!("/api/owner/tenants/{id}/subscription"),
            Some(&app.token),
            Some(&json!({"plan": "tiny", "status": "trialing", "trial_days": 7})),
        )
        .await;
    assert_eq!(response.status(), 200);
    let sub: Value = response.json().await.expect("json");
    assert_eq!(sub["plan_code"], "tiny");
    assert_eq!(sub["status"], "trialing");
    assert!(sub["trial_ends_at"].is_string());
    let new_user =
        json!({"email": "second@growing.example", "role": "staff", "password": "a long password"});
    let response = app
        .on(
            Method::POST,
            "growing.localhost",
            "/api/v1/users",
            Some(&admin),
            Some(&new_user),
        )
        .await;
    assert_eq!(
        response.status(),
        409,
        "the new plan's limit is not applied"
    );
    // Raising the plan's limit applies at once too.
    let response = app
        .on(
            Method::PUT,
            "127.0.0.1",
            "/api/owner/plans/tiny",
            Some(&app.token),
            Some(&json!({"name": "Tiny", "price_cents": 900, "max_users": 5})),
        )
        .await;
    assert_eq!(response.status(), 200);
    let response = app
        .on(
            Method::POST,
            "growing.localhost",
            "/api/v1/users",
            Some(&admin),
            Some(&new_user),
        )
        .await;
    assert_eq!(response.status(), 201);

    let history: Value = app
        .get(
            &format!("/api/owner/tenants/{id}/subscription"),
            Some(&app.token),
        )
        .await
        .json()
        .await
        .expect("json");
    let statuses: Vec<&str> = history["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|s| s["status"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(statuses, ["trialing", "cancelled"]);
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM tenants WHERE id = '{id}' AND plan_code = 'tiny'"
        ))
        .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM audit_log WHERE action IN ('plan.create', 'plan.update', 'tenant.subscription_change')").await,
        3
    );
}

#[tokio::test]
async fn the_dashboard_finds_tenants_by_name_slug_or_domain() {
    let app = spawn_app().await;
    app.create_tenants("findme", 3).await;
    let tenant = app.create_tenant("other-one").await;
    let id = tenant["id"].as_str().expect("id");
    let response = app
        .post_json(
            &format!("/api/owner/tenants/{id}/domains"),
            Some(&app.token),
            &json!({"domain": "clinic.example.org"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let b = browser(&app, "owner@example.com").await;
    let page = |path: &'static str| {
        let b = &b;
        let app = &app;
        async move {
            let response = b.get(app, path).await;
            assert_eq!(response.status(), 200, "{path}");
            response.text().await.expect("html")
        }
    };
    let html = page("/owner/tenants?q=findme").await;
    assert!(html.contains("findme-0") && html.contains("findme-2") && !html.contains("other-one"));
    let html = page("/owner/tenants?q=clinic.example").await;
    assert!(
        html.contains("other-one") && !html.contains("findme-0"),
        "search by domain"
    );
    let html = page("/owner/tenants?sort=slug&dir=desc").await;
    let (a, b_pos) = (
        html.find("other-one").expect("other"),
        html.find("findme-0").expect("findme"),
    );
    assert!(a < b_pos, "not sorted by slug, descending");
    let html = page("/owner/tenants?status=suspended").await;
    assert!(html.contains("No tenant matches."));
    let response = b.get(&app, "/owner/tenants?status=bogus").await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn the_backups_panel_backs_up_and_restores_after_the_slug_is_typed() {
    let app = spawn_app().await;
    let (tenant, token) = app.tenant_with_admin("panel", "pro").await;
    let id = tenant["id"].as_str().expect("id").to_string();
    let b = browser(&app, "owner@example.com").await;
    let response = b
        .form(
            &app,
            &format!("/owner/tenants/{id}/backup"),
            &[("_csrf", &b.csrf)],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert!(
        response.headers()[LOCATION]
            .to_str()
            .expect("location")
            .contains("backup_started")
    );
    let backup_id: String = eventually("the backup finishes", || async {
        let found = app
            .owner_client()
            .await
            .query_opt(
                "SELECT id::text FROM tenant_backups WHERE status = 'succeeded'",
                &[],
            )
            .await
            .expect("query");
        found.map(|r| r.get::<_, String>(0)).ok_or("not yet")
    })
    .await;
    let page = b
        .get(&app, &format!("/owner/tenants/{id}"))
        .await
        .text()
        .await
        .expect("html");
    assert!(
        page.contains(&backup_id) && page.contains("Restore"),
        "the panel lists it"
    );

    // Something changes after the backup.
    let practice = app
        .on(
            Method::POST,
            "panel.localhost",
            "/api/v1/practices",
            Some(&token),
            Some(&json!({ "name": "Later" })),
        )
        .await;
    assert_eq!(practice.status(), 201);
    let practices = || async {
        app.on(
            Method::GET,
            "panel.localhost",
            "/api/v1/practices",
            Some(&token),
            None,
        )
        .await
        .json::<Value>()
        .await
        .expect("json")["items"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(practices().await, 1);

    // A wrong slug restores nothing.
    let path = format!("/owner/tenants/{id}/restore");
    let refused = b
        .form(
            &app,
            &path,
            &[
                ("_csrf", &b.csrf),
                ("backup_id", &backup_id),
                ("confirm", "pane"),
            ],
        )
        .await;
    assert_eq!(refused.status(), 400);
    assert!(
        refused
            .text()
            .await
            .expect("html")
            .contains("to confirm the restore")
    );
    assert_eq!(app.count("SELECT count(*) FROM tenant_restores").await, 0);

    let started = b
        .form(
            &app,
            &path,
            &[
                ("_csrf", &b.csrf),
                ("backup_id", &backup_id),
                ("confirm", "panel"),
            ],
        )
        .await;
    assert_eq!(started.status(), 303);
    eventually("the restore finishes", || async {
        let done = app
            .count("SELECT count(*) FROM tenant_restores WHERE status = 'succeeded'")
            .await;
        if done == 1 { Ok(()) } else { Err(done) }
    })
    .await;
    assert_eq!(
        practices().await,
        0,
        "the tenant is as it was at the backup"
    );
}

#[tokio::test]
async fn the_maintenance_box_puts_a_tenant_in_maintenance_and_ends_it() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("paused").await;
    let id = tenant["id"].as_str().expect("id").to_string();
    let b = browser(&app, "owner@example.com").await;
    let response = b
        .form(
            &app,
            &format!("/owner/tenants/{id}/maintenance"),
            &[
                ("_csrf", &b.csrf),
                ("note", "replacing the <disk>"),
                ("allow_reads", "on"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert!(
        response.headers()[LOCATION]
            .to_str()
            .expect("location")
            .contains("maintenance_on")
    );
    let page = b
        .get(&app, &format!("/owner/tenants/{id}"))
        .await
        .text()
        .await
        .expect("html");
    assert!(
        page.contains("maintenance: operator, reads served"),
        "the badge says so"
    );
    assert!(
        page.contains("replacing the ") && !page.contains("<disk>"),
        "the note, escaped"
    );
    assert!(page.contains("End maintenance"));
    let write = app
        .on(
            Method::POST,
            "paused.localhost",
            "/api/v1/auth/login",
            None,
            Some(&json!({ "email": "a@b.example", "password": "whatever-1" })),
        )
        .await;
    assert_eq!(write.status(), 503, "writes are refused");

    // A note too long is the page again with the error, and changes nothing.
    let response = b
        .form(
            &app,
            &format!("/owner/tenants/{id}/maintenance"),
            &[("_csrf", &b.csrf), ("note", &"x".repeat(501))],
        )
        .await;
    assert_eq!(response.status(), 400);
    assert!(response.text().await.expect("html").contains("at most 500"));

    let response = b
        .form(
            &app,
            &format!("/owner/tenants/{id}/maintenance/off"),
            &[("_csrf", &b.csrf)],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        app.count("SELECT count(*) FROM tenants WHERE maintenance IS NOT NULL")
            .await,
        0
    );
    let page = b
        .get(&app, &format!("/owner/tenants/{id}"))
        .await
        .text()
        .await
        .expect("html");
    assert!(!page.contains("tenant-maintenance"), "no badge any more");
}

#[tokio::test]
async fn the_servers_page_lists_servers_and_drains_and_activates_them() {
    let app = spawn_app().await;
    let b = browser(&app, "owner@example.com").await;
    let page = b
        .get(&app, "/owner/servers")
        .await
        .text()
        .await
        .expect("html");
    assert!(page.contains(">default<"), "the default server is listed");
    assert!(page.contains("Add a server"), "owners may add one");

    let response = b
        .form(
            &app,
            "/owner/servers/default/status",
            &[("_csrf", &b.csrf), ("status", "draining")],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        app.count(
            "SELECT count(*) FROM database_servers WHERE id = 'default' AND status = 'draining'"
        )
        .await,
        1
    );
    let created = app
        .post_json(
            "/api/owner/tenants",
            Some(&app.token),
            &json!({ "slug": "nowhere", "name": "Nowhere" }),
        )
        .await;
    assert_eq!(created.status(), 409, "no active server has room");
    let body: Value = created.json().await.expect("json");
    assert_eq!(body["error"]["code"], "no_server_capacity");
    b.form(
        &app,
        "/owner/servers/default/status",
        &[("_csrf", &b.csrf), ("status", "active")],
    )
    .await;
    app.create_tenant("somewhere").await;

    // A server that does not answer is refused with the page and its error; the URL's
    // password is not shown back.
    let response = b
        .form(
            &app,
            "/owner/servers",
            &[
                ("_csrf", &b.csrf),
                ("name", "ghost"),
                (
                    "url",
                    "postgres://admin:hunter2hunter2@127.0.0.1:1/postgres",
                ),
            ],
        )
        .await;
    assert_eq!(response.status(), 400);
    let page = response.text().await.expect("html");
    assert!(page.contains("cannot be reached"), "the reason is shown");
    assert!(!page.contains("hunter2hunter2"));
    assert_eq!(app.count("SELECT count(*) FROM database_servers").await, 1);

    // Viewers look, and change nothing.
    app.create_operator("viewer@example.com", "viewer").await;
    let v = browser(&app, "viewer@example.com").await;
    let page = v
        .get(&app, "/owner/servers")
        .await
        .text()
        .await
        .expect("html");
    assert!(!page.contains("Add a server") && !page.contains("Drain"));
    let response = v
        .form(
            &app,
            "/owner/servers/default/status",
            &[("_csrf", &v.csrf), ("status", "disabled")],
        )
        .await;
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn the_settings_and_features_boxes_change_what_the_tenant_app_reads() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("styled").await;
    let id = tenant["id"].as_str().expect("id").to_string();
    let b = browser(&app, "owner@example.com").await;
    let page = b
        .get(&app, &format!("/owner/tenants/{id}"))
        .await
        .text()
        .await
        .expect("html");
    assert!(page.contains("id=\"settings-form\""), "the settings box");
    assert!(page.contains("value=\"UTC\""), "the default time zone");
    assert!(page.contains("Users</dt><dd>"), "usage against limits");

    let response = b
        .form(
            &app,
            &format!("/owner/tenants/{id}/settings"),
            &[
                ("_csrf", &b.csrf),
                ("time_zone", "Asia/Tokyo"),
                ("locale", "ja-JP"),
                ("brand_name", "Styled <Co>"),
                ("brand_colour", ""),
                ("logo_file_id", ""),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let served: Value = app
        .on(
            Method::GET,
            "styled.localhost",
            "/api/v1/settings",
            None,
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(served["time_zone"], "Asia/Tokyo");
    assert_eq!(served["brand_name"], "Styled <Co>");
    let page = b
        .get(&app, &format!("/owner/tenants/{id}"))
        .await
        .text()
        .await
        .expect("html");
    assert!(
        page.contains("Styled &#60;Co&#62;") || page.contains("Styled &lt;Co&gt;"),
        "the brand name, escaped"
    );

    // A bad value is the page again with the error, and changes nothing.
    let response = b
        .form(
            &app,
            &format!("/owner/tenants/{id}/settings"),
            &[
                ("_csrf", &b.csrf),
                ("time_zone", "Nowhere/Land"),
                ("locale", "en"),
            ],
        )
        .await;
    assert_eq!(response.status(), 422);
    assert!(response.text().await.expect("html").contains("time_zone"));

    let response = b
        .form(
            &app,
            &format!("/owner/tenants/{id}/features"),
            &[
                ("_csrf", &b.csrf),
                ("feature", "files"),
                ("feature_state", "off"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let served: Value = app
        .on(
            Method::GET,
            "styled.localhost",
            "/api/v1/settings",
            None,
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(served["features"], json!(["core"]));
    assert_eq!(served["time_zone"], "Asia/Tokyo", "the settings stayed");
    let page = b
        .get(&app, &format!("/owner/tenants/{id}"))
        .await
        .text()
        .await
        .expect("html");
    assert!(page.contains("(override)"), "the override is shown");

    // The overview shows what the master key seals: one tenant's data key, all of it.
    let overview = b.get(&app, "/owner").await.text().await.expect("html");
    assert!(
        overview.contains("id=\"master-keys\""),
        "the master key panel"
    );
    assert!(
        overview.contains("<td class=\"num\">1</td><td class=\"num\">0</td>")
            && overview.contains("100%"),
        "one data key, the whole share"
    );
}

/// Dashboard sessions slide: a page view extends an idle session, a session idle for
/// longer than CP_DASHBOARD_IDLE_SECS (or past its whole lifetime) ends, and the login
/// page then says it expired. The live refresh of a run's page keeps nothing alive.
#[tokio::test]
async fn dashboard_sessions_slide_and_an_expired_one_is_told_so() {
    let app = spawn_app().await;
    let b = browser(&app, "owner@example.com").await;
    let owner = app.owner_client().await;
    let idle_for = || async {
        owner
            .query_one(
                "SELECT extract(epoch FROM now() - last_seen_at)::float8 FROM owner_sessions \
                 WHERE kind = 'dashboard' AND revoked_at IS NULL",
                &[],
            )
            .await
            .expect("session")
            .get::<_, f64>(0)
    };
    let age = |minutes: i32| {
        let owner = &owner;
        async move {
            owner
                .execute(
                    "UPDATE owner_sessions SET last_seen_at = now() - make_interval(mins => $1) \
                     WHERE kind = 'dashboard'",
                    &[&minutes],
                )
                .await
                .expect("age the session");
        }
    };

    // Idle for 20 of the 30 minutes: a page view is served and moves the session on.
    age(20).await;
    assert_eq!(b.get(&app, "/owner/tenants").await.status(), 200);
    assert!(
        idle_for().await < 60.0,
        "a page view did not slide the session"
    );

    // The live refresh is served but does not count as activity.
    age(20).await;
    let live = b
        .get(
            &app,
            &format!("/owner/migrations/{}/live", uuid::Uuid::new_v4()),
        )
        .await;
    assert_eq!(
        live.status(),
        404,
        "signed in, the unknown run is not found"
    );
    assert!(
        idle_for().await > 60.0 * 19.0,
        "the live refresh slid the session"
    );

    // Idle past the limit: sent to sign in again, told why, and the cookie goes.
    age(31).await;
    let response = b.get(&app, "/owner/tenants").await;
    assert_eq!(response.status(), 303);
    let location = response.headers()[LOCATION]
        .to_str()
        .expect("location")
        .to_string();
    assert!(
        location.starts_with("/owner/login?") && location.contains("expired=1"),
        "{location}"
    );
    assert_eq!(
        set_cookie(&response, "cp_session").as_deref(),
        Some("cp_session="),
        "the dead cookie is cleared"
    );
    let page = no_redirects()
        .get(format!("{}{location}", app.address))
        .send()
        .await
        .expect("login page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("Your session expired"), "{page}");

    // Past its whole lifetime, however active: over too.
    let b = browser(&app, "owner@example.com").await;
    assert_eq!(b.get(&app, "/owner").await.status(), 200);
    owner
        .execute(
            "UPDATE owner_sessions SET expires_at = now() - interval '1 second' \
             WHERE kind = 'dashboard' AND revoked_at IS NULL",
            &[],
        )
        .await
        .expect("expire");
    let response = b.get(&app, "/owner").await;
    assert_eq!(response.status(), 303);
    assert!(
        response.headers()[LOCATION]
            .to_str()
            .expect("location")
            .contains("expired=1")
    );
}

/// The audit log hides the reconciler's step events on request, takes a date range, and
/// exports the same selection as CSV, with formula-like cells defused.
#[tokio::test]
async fn the_audit_log_filters_by_kind_and_date_and_exports_csv() {
    let app = spawn_app().await;
    app.create_tenant("audited").await;
    // A failed sign-in records the email as given: a spreadsheet formula, here.
    let response = app
        .post_json(
            "/api/owner/auth/login",
            None,
            &json!({"email": "=HYPERLINK(\"x\")", "password": "wrong password"}),
        )
        .await;
    assert_eq!(response.status(), 401);
    let b = browser(&app, "owner@example.com").await;

    let all = b
        .get(&app, "/owner/audit")
        .await
        .text()
        .await
        .expect("html");
    assert!(
        all.contains("tenant.step."),
        "step events are listed by default"
    );
    let quiet = b
        .get(&app, "/owner/audit?hide_system=on")
        .await
        .text()
        .await
        .expect("html");
    assert!(!quiet.contains("tenant.step."), "step events are hidden");
    assert!(quiet.contains("tenant.create"), "{quiet}");

    // Days in UTC, as the filter reads them.
    let days = app
        .owner_client()
        .await
        .query_one(
            "SELECT d::text, (d + 1)::text, (d - 1)::text \
             FROM (SELECT (now() AT TIME ZONE 'UTC')::date AS d) t",
            &[],
        )
        .await
        .expect("days");
    let (today, tomorrow, yesterday): (String, String, String) =
        (days.get(0), days.get(1), days.get(2));
    let future = b
        .get(&app, &format!("/owner/audit?from={tomorrow}"))
        .await
        .text()
        .await
        .expect("html");
    assert!(future.contains("No events match"), "{future}");
    let past = b
        .get(&app, &format!("/owner/audit?to={yesterday}"))
        .await
        .text()
        .await
        .expect("html");
    assert!(past.contains("No events match"), "{past}");
    let both = b
        .get(&app, &format!("/owner/audit?from={today}&to={today}"))
        .await
        .text()
        .await
        .expect("html");
    assert!(
        both.contains("tenant.create"),
        "today's events are in today's range"
    );
    assert_eq!(
        b.get(&app, "/owner/audit?from=yesterday").await.status(),
        400
    );
    assert_eq!(
        app.get("/api/owner/audit?from=soon", Some(&app.token))
            .await
            .status(),
        400
    );
    let api: Value = app
        .get("/api/owner/audit?hide_system=true", Some(&app.token))
        .await
        .json()
        .await
        .expect("json");
    let actions: Vec<&str> = api["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        !actions.is_empty() && actions.iter().all(|a| !a.contains(".step.")),
        "{actions:?}"
    );

    let csv = b.get(&app, "/owner/audit.csv?hide_system=on").await;
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/csv")
    );
    let text = csv.text().await.expect("csv");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("id,at,actor,action,target_type,target_id,ip,details")
    );
    assert!(text.contains(",tenant.create,"), "{text}");
    assert!(!text.contains(".step."), "{text}");
    assert!(
        text.contains("'=hyperlink")
            && !text.contains(",=hyperlink")
            && !text.contains("\"=hyperlink"),
        "a formula is defused: {text}"
    );
}
